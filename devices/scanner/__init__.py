"""Barcode scanners on USB-CDC serial: one code per line, optional AIM symbology prefix.

``protocol`` splits and decodes lines, ``gs1`` checks GTINs and parses GS1 element strings,
``driver`` reads a port and reconnects by itself, ``config`` is the device's config schema.
"""
