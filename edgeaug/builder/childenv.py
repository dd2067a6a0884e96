"""Imported first by the build's forkserver: one BLAS thread in every process forked from it.

Standard library only, and imported before numpy: OpenBLAS reads its thread
count once, when numpy loads it.  Only the forkserver and its children run
this module's import-time code; the process that builds keeps its environment.
"""

import os

from edgeaug.builder.processes import BLAS_ENV

for _k, _v in BLAS_ENV.items():
    os.environ.setdefault(_k, _v)  # a value the user set wins
