"""Helpers for the builder tests that compare a pack's bytes: its sha256, and a reference build at a chunk size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import edgeaug.builder.chunks as chunks
from edgeaug.builder.pipeline import build


def sha(p: Path) -> str:
    """The sha256 of the file ``p`` (hex)."""
    return hashlib.sha256(p.read_bytes()).hexdigest()


def chunked_sha(data: Path, out: Path, chunk_records: int, **args) -> str:
    """Build ``data`` into ``out`` with ``chunk_records`` sources per chunk (as the runs under test); its sha256."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunks, "CHUNK_RECORDS", chunk_records)
        build(data, out, **args)
    return sha(out)
