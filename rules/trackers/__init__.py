"""The store's pure trackers, beside the rules they feed: alert lifecycle, RFID tag presence,
self-checkout reconciliation, shelf lane counts and device health. Each is a state machine of
(state, event or now) -> facts, with the clock passed in; none does I/O."""
