"""What every command shares: one-line errors with exit code 2, and progress on a terminal or in a log."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO

import typer


def fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn the library's expected errors into one clear line and exit code 2."""
    from edgeaug.builder.partial import WriteError
    from edgeaug.builder.plan import BuildError
    from edgeaug.config.fields import ConfigError
    from edgeaug.device.format import FormatError
    from edgeaug.sources.scan import SourceError

    try:
        yield
    except (BuildError, ConfigError, FormatError, SourceError, WriteError, OSError) as e:
        fail(str(e))


class LineProgress:
    """Progress as plain lines, for logs and pipes: the first update, then every ``interval`` seconds, and the last.

    ``done`` is the last count reported (an interrupted build says how far it got).
    """

    def __init__(
        self,
        label: str,
        unit: str,
        out: Optional[TextIO] = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.out, self.interval, self.clock = label, unit, out, interval, clock
        self.start, self.last, self.done = clock(), None, 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        now = self.clock()
        if self.last is not None and done < total and now - self.last < self.interval:
            return
        self.last = now
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(
            f"{self.label}: {done}/{total} {self.unit}{pct}, {now - self.start:.0f}s",
            file=self.out or sys.stderr,
            flush=True,
        )


@contextmanager
def progress_to(label: str, enabled: bool = True, unit: str = "sources"):
    """A ``progress(done, total)`` callback: a rich bar on a terminal, periodic lines on stderr otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield LineProgress(label, unit)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextmanager
def model_errors() -> Iterator[None]:
    from edgeaug.models.litert import LiteRTError
    from edgeaug.models.profile import ModelError

    with errors():
        try:
            yield
        except (ModelError, LiteRTError) as e:
            fail(str(e))


def numbers(text: Optional[str], flag: str):
    """A ``--mean``/``--std`` flag's numbers, or None when the flag is absent."""
    from edgeaug.models.profile import parse_numbers

    return None if text is None else parse_numbers(text, flag)


# Options shared by `target from-onnx` and `target from-tflite`.


def size_arg(size: Optional[str]):
    if size is None:
        return None
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        fail(f"--size: expected HxW like 224x224, got {size!r}")
    return int(parts[0]), int(parts[1])
