"""edgeaug: offline, deterministic data augmentation for edge devices.

The device side is :mod:`edgeaug.loader` (numpy + lmdb only).  The
workstation side (build, verify, inspect) lives in the other modules and
imports OpenCV lazily.
"""

__version__ = "0.1.0"
