"""Self-checkout kiosks: JSON session events over MQTT (``protocol`` is the codec, ``config`` the
device's settings). The reconciliation against the bagging scale lives in
``rules.trackers.checkout``."""
