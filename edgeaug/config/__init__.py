"""Configuration as data: TOML validated into frozen dataclasses.

* :mod:`.fields`: TOML reading and typed field checks with file-and-field errors;
* :mod:`.targets`: device target profiles (shipped ones in the top-level ``targets/``);
* :mod:`.recipe`: augmentation recipes (shipped ones in ``recipes/``).
"""
