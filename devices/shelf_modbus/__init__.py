"""The wired smart shelf: Modbus RTU over RS-485.

``protocol`` is the sans-I/O codec and register map; ``driver`` polls a controller with pymodbus.
"""
