"""The wireless smart shelf: JSON weight readings over MQTT (``protocol`` is its codec)."""
