"""The composition root: config, store state, wiring, alert dispatch, web app, CLI."""
