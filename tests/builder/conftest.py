"""Fixtures shared by the builder's tests."""

from pathlib import Path

import pytest
from chunked_build import chunked_sha
from killed_build import ARGS

import edgeaug.builder.chunks as chunks
import edgeaug.builder.workers as workers
from edgeaug.demo import make_dataset


@pytest.fixture
def renders(monkeypatch):
    """Source indices rendered in this process, in order (``workers.render_source`` counted)."""
    seen = []
    real = workers.render_source

    def counting(task, aug, seed):
        seen.append(task.index)
        return real(task, aug, seed)

    monkeypatch.setattr(workers, "render_source", counting)
    return seen


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """The dataset of the resume and interrupt tests (test_resume_*.py, test_interrupt.py; others define their own)."""
    return make_dataset(tmp_path_factory.mktemp("resume") / "shapes", per_class=3, seed=5)


@pytest.fixture(scope="session")
def baseline(data, tmp_path_factory) -> str:
    """The uninterrupted build of ``data`` with ``killed_build.ARGS``, one source per chunk (as the kill runs do)."""
    return chunked_sha(data, tmp_path_factory.mktemp("base") / "pack.lmdb", 1, **ARGS)


@pytest.fixture
def small_batches(monkeypatch):
    """One source per chunk (``chunks.CHUNK_RECORDS = 1``) for this test."""
    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 1)  # one source per chunk: many kill points
