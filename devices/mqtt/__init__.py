"""MQTT 3.1.1, client side: ``protocol`` is the sans-I/O codec (bytes in, typed packets out, and
the reverse), ``client`` the asyncio connection around it (``MqttConnection``)."""
