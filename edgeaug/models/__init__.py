"""Model tools (optional onnx / onnxruntime, imported lazily).

* :mod:`.onnx_io`: loading and graph inspection (sessions: :mod:`edgeaug.device.runners`);
* :mod:`.from_model`: a target profile read from a model;
* :mod:`.adapt`: a model adapted to take the pack's tensor as is;
* :mod:`.calibrate`: calibration readers over a pack;
* :mod:`.evaluate`: accuracy and throughput of a model on a pack.
"""
