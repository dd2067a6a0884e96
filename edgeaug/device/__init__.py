"""Everything a device needs to read a pack: numpy, lmdb (optional) and the standard library only.

* :mod:`.format`: the pack's bytes (keys, record header, index, manifest), shared with the writer;
* :mod:`.labels` and :mod:`.instances`: a record's labels section (boxes, keypoints, masks, instance masks as
  run lengths, soft labels), per format version, and soft training targets;
* :mod:`.lmdblayout` and :mod:`.lmdbpure`: a bounds-checked pure-Python LMDB reader (32-bit devices, no lmdb,
  structure checks);
* :mod:`.readplan`: where records lie in the file, and which batch reader suits the pack;
* :mod:`.backends`: single records and the manifest (py-lmdb or the pure reader), one open file per pack file;
* :mod:`.batchread` and :mod:`.prefetch`: batches read at the records' file offsets, and read ahead;
* :mod:`.online` and :mod:`.online_labels`: online flip and shift, and their labels;
* :mod:`.runners`: ONNX Runtime or LiteRT on batches;
* :mod:`.packmeta`: the manifest, the index and record digests, checked;
* :mod:`.pack`: :class:`~edgeaug.device.pack.Pack`, records and shuffled batches;
* :mod:`.loader`: the stable name of ``Pack`` and ``PackError``, and the command line.

:mod:`edgeaug.bundle` (a workstation tool) writes these modules as one file for copying to a device.
Nothing here imports the rest of edgeaug; ``tests/device/test_boundary.py`` checks it.
"""
