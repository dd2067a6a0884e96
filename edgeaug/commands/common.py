"""What every command shares: one-line errors with exit code 2, and progress on a terminal or in a log."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, Optional, TextIO, Tuple

import typer


def _choices(name: str, *values: str) -> type:
    """A str Enum whose members are named as their values: typer checks them and lists them in --help."""
    return Enum(name, {v: v for v in values}, type=str)


Split = _choices("Split", "train", "val")
OnError = _choices("OnError", "skip", "fail")
Layout = _choices("Layout", "NCHW", "NHWC")
Color = _choices("Color", "RGB", "BGR", "GRAY")
WordSize = _choices("WordSize", "32", "64")


def value(choice: Optional[Enum]) -> Optional[str]:
    """The plain string of an enum option (None stays None)."""
    return None if choice is None else choice.value


def fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def os_error_text(e: OSError, about: Optional[Path] = None) -> str:
    """An OSError as one line that names its file: its own, else the one the command was working on."""
    if e.filename is not None:
        also = f" -> {e.filename2}" if e.filename2 is not None else ""
        return f"{e.filename}{also}: {e.strerror or e}"
    return f"{about}: {e.strerror or e}" if about is not None else str(e)


@contextmanager
def errors(about: Optional[Path] = None) -> Iterator[None]:
    """Turn the library's expected errors into one clear line and exit code 2.

    ``about`` is the file an OSError without a file name is reported against (the command's output or pack).
    """
    from edgeaug.builder.partial import WriteError
    from edgeaug.builder.plan import BuildError
    from edgeaug.config.fields import ConfigError
    from edgeaug.device.format import FormatError
    from edgeaug.ops.base import OpError
    from edgeaug.sources.scan import SourceError

    try:
        yield
    except (BuildError, ConfigError, FormatError, OpError, SourceError, WriteError) as e:
        fail(str(e))
    except OSError as e:
        fail(os_error_text(e, about))


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


# Options whose text has a shape: checked by typer callbacks, so a bad value is a usage error (exit 2).


def size_arg(size: Optional[str]) -> Optional[Tuple[int, int]]:
    """``--size HxW`` as (height, width)."""
    if size is None:
        return None
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"expected HxW like 224x224, got {size!r}")
    return int(parts[0]), int(parts[1])


def shard_arg(shard: Optional[str]) -> Optional[str]:
    """``--shard I/N`` with 0 <= I < N, kept as text for the builder."""
    if shard is None:
        return None
    parts = shard.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
        raise typer.BadParameter(f"expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {shard!r}")
    return shard


def val_arg(val: float) -> float:
    """``--val``: a fraction in [0, 1) (1 would leave nothing to train on)."""
    if not 0.0 <= val < 1.0:
        raise typer.BadParameter(f"{val:g} is not in [0, 1)")
    return val
