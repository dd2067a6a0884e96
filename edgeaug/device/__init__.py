"""Everything a device needs to read a pack: numpy, lmdb (optional) and the standard library only.

* :mod:`.format`: the pack's bytes (keys, record header, index, manifest), shared with the writer;
* :mod:`.lmdbpure`: a bounds-checked pure-Python LMDB reader (32-bit devices, no lmdb, structure checks);
* :mod:`.loader`: :class:`~edgeaug.device.loader.Pack`, records and shuffled batches;
* :mod:`.bundle`: writes format + lmdbpure + loader as one file for copying to a device.

Nothing here imports the rest of edgeaug; ``tests/device/test_boundary.py`` checks it.
"""
