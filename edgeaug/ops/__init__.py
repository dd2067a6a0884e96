"""Augmentation ops, registered by name.

Each op's ``sample(rng, size) -> params`` draws all randomness; ``matrix``/``apply`` use the params
and touch no RNG.  :mod:`.base` holds the Op class and the registry decorator; the leaves
(:mod:`.geometric`, :mod:`.composite`, :mod:`.photometric`, :mod:`.onnx_model`) import only the base;
:mod:`.registry` imports the leaves and is what recipes read.
"""
