"""Fridge and freezer sensors read where Zigbee2MQTT publishes them (``zigbee2mqtt/{name}``).

``protocol`` decodes the device state JSON and the availability messages; ``config`` is the
device's config schema.
"""
