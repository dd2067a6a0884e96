"""Batches ahead of the caller: a prefetch thread, when it helps, and recycled batch buffers."""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, List, Tuple

import numpy as np


def prefetched(jobs: Iterable, fill: Callable, depth: int = 1) -> Iterator:
    """``fill(job)`` for each job on a background thread, ``depth`` results ahead; yields them in order.

    The reads release the GIL, so the next batch is read while the caller's
    model runs.  An exception in ``fill`` is raised here, at the batch it
    belongs to.  Closing the generator stops the thread before returning.
    """
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for job in jobs:
                if stop.is_set() or not put((fill(job), None)):
                    return
            put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, e))

    t = threading.Thread(target=work, name="edgeaug-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
            item = None
    finally:
        stop.set()
        t.join()


def prefetched_when_useful(
    jobs: Iterable, fill: Callable, clock: Callable[[], float] = time.perf_counter, share: float = 0.25, probe: int = 3
) -> Iterator:
    """``fill(job)`` for each job, in order: on this thread while the caller is quick, then on a background one.

    A background thread costs a queue hand-off per batch (10-30% of a mapped
    read when the caller does nothing with the batches), and saves the whole
    read when the caller's own work (a model step that releases the GIL) is
    as long.  So batches are read here until ``probe`` of them show the
    caller spending more than ``share`` of the read time between batches;
    the rest go through :func:`prefetched`.  Only the speed depends on the
    timing: the batches and their order are the same either way.
    """
    it = iter(jobs)
    reading = waiting = 0.0
    for k, job in enumerate(it):
        t0 = clock()
        item = fill(job)
        t1 = clock()
        yield item
        item = None
        reading, waiting = reading + (t1 - t0), waiting + (clock() - t1)
        if k + 1 >= probe and waiting > share * reading:
            yield from prefetched(it, fill)
            return


def reusable(spare: List[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype, keep: int = 5) -> np.ndarray:
    """A batch array: a recycled one if nobody else holds it any more, else a new one.

    A fresh multi-megabyte ``np.empty`` per batch can cost as much as the copy
    itself (page faults, depending on the allocator's state).  Arrays the
    caller (or a view, a queue, a session) still references are never
    recycled: ``sys.getrefcount`` is 2 only for the ``spare`` list's reference
    plus the call's own argument (a view the caller holds references its
    base).  A shorter batch (an epoch's last) is the front of a free full one.
    ``keep`` bounds the list: the caller's batch, the one before, one queued,
    one being filled.
    """
    for k in range(len(spare)):
        fits = spare[k].shape[1:] == shape[1:] and spare[k].shape[0] >= shape[0] and spare[k].dtype == dtype
        if fits and sys.getrefcount(spare[k]) == 2:
            spare.append(spare.pop(k))
            # A short (last) batch is the front of a full one: no new buffer to fault in.
            return spare[-1] if spare[-1].shape[0] == shape[0] else spare[-1][: shape[0]]
    spare.append(np.empty(shape, dtype))
    if len(spare) > keep:
        spare.pop(0)
    return spare[-1]
