"""Fixtures shared by the builder's tests."""

import pytest

import edgeaug.builder.workers as workers


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
