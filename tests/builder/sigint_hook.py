"""Ctrl-C at an exact point of a CLI build: SIGINT to the whole process group, as a terminal sends it.

Imported by the build's main process (:func:`install_main`) and, through the
forkserver's preload list, by every worker and the writer, where it hooks
their side at import.  ``SIGINT_AT=WHERE:N`` names the point (the N-th call
of one function in one process); ``SIGINT_ONCE`` is a file created by the
first process that fires, so the group gets one SIGINT however many processes
reach their N-th call.  The firing process prints ``SIGINT`` on stdout.

``spawn:N`` fires once the N-th process the pools start has set itself up
(it ignores SIGINT by then) and before the pool's manager thread runs: the
moment the build used to hang for good.
"""

import os
import signal
import time

WHERE, N = os.environ["SIGINT_AT"].split(":")[0], int(os.environ["SIGINT_AT"].split(":")[1])
MAIN = {"spawn", "submit", "add"}  # points in the main process; the others are in its children


def fire() -> None:
    try:
        os.close(os.open(os.environ["SIGINT_ONCE"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.write(1, b"SIGINT\n")
    os.killpg(0, signal.SIGINT)


def hook(obj, name: str, before: bool) -> None:
    """Fire at the N-th call of ``obj.name`` in this process (before or after it runs)."""
    real, calls = getattr(obj, name), [0]

    def hooked(*a, **k):
        calls[0] += 1
        if before and calls[0] == N:
            fire()
        out = real(*a, **k)
        if not before and calls[0] == N:
            fire()
        return out

    setattr(obj, name, hooked)


def _ready(pid: int) -> str:
    return f"{os.environ['SIGINT_ONCE']}.ready-{pid}"


def _spawned(pool) -> None:
    """After the N-th ``_spawn_process``: wait until that process is set up, then fire."""
    pid, deadline = list(pool._processes)[-1], time.monotonic() + 20
    while not os.path.exists(_ready(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    fire()


def install_main() -> None:
    from concurrent.futures import ProcessPoolExecutor

    import edgeaug.builder.writer as writer

    if WHERE == "spawn":  # a pool process is set up, the pool's manager thread not yet started
        real, calls = ProcessPoolExecutor._spawn_process, [0]

        def spawn(self):
            real(self)
            calls[0] += 1
            if calls[0] == N:
                _spawned(self)

        ProcessPoolExecutor._spawn_process = spawn
    elif WHERE == "submit":
        hook(ProcessPoolExecutor, "submit", before=True)
    elif WHERE == "add":  # the writer has taken N chunks
        hook(writer.PackWriter, "add", before=False)


def _install_child() -> None:
    import edgeaug.builder.chunks as chunks
    import edgeaug.builder.merge as merge
    import edgeaug.builder.workers as workers

    if WHERE == "spawn":  # say when set up
        for name in ("_init_worker", "_init_writer"):
            real = getattr(workers, name)
            setattr(workers, name, lambda *a, _real=real: (_real(*a), open(_ready(os.getpid()), "w").close()))
    elif WHERE == "init":  # a worker is starting: it does not ignore SIGINT yet
        hook(workers, "_init_worker", before=True)
    elif WHERE == "render":
        hook(workers, "render_source", before=True)
    elif WHERE == "write":  # a worker has written its N-th chunk file
        hook(chunks, "write", before=False)
    elif WHERE in ("merge_chunk", "seal"):  # in the writer process
        hook(merge, WHERE, before=True)


if (WHERE == "spawn" or WHERE not in MAIN) and os.environ.get("SIGINT_MAIN") != str(os.getpid()):
    _install_child()
