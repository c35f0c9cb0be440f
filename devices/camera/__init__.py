"""Shelf cameras: any OpenCV source (RTSP, HTTP MJPEG, a file, a local device); each lane is a
rectangle of the frame whose occupancy (0 empty .. 1 full) is measured against an empty-shelf
reference image captured at install time.

- ``config``: ``CameraDevice`` and its lanes and calibration.
- ``occupancy``: sans-I/O measurement, frames in and occupancy out (numpy and OpenCV only).
- ``driver``: ``CameraDriver``, the stream reader thread and its asyncio face.
"""
