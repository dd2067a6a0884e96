"""Reading TOML configs safely and validating their fields.

Configs are data: they are parsed with tomllib (tomli before 3.11) and every
field is checked for type and range.  Errors name the file and the dotted
field, e.g. ``recipe.toml: ops[2].degrees: expected a [low, high] pair``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A recipe or target file is malformed; the message names file and field."""


def load_toml(path: Path) -> dict:
    """Parse a TOML file, turning syntax and I/O errors into ConfigError."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None


class Fields:
    """Typed accessors over one table that remember where they are.

    ``where`` is the file name, ``prefix`` the dotted path of the table.
    Call :meth:`done` after reading to reject unknown keys.
    """

    def __init__(self, table: Any, where: str, prefix: str = "") -> None:
        self.where, self.prefix = where, prefix
        if not isinstance(table, Mapping):
            self.fail("", f"expected a table, got {type(table).__name__}")
        self.table = dict(table)
        self.seen: set = set()

    def fail(self, key: str, msg: str) -> None:
        field = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)
        raise ConfigError(f"{self.where}: {field}: {msg}" if field else f"{self.where}: {msg}")

    def sub(self, key: str, required: bool = True) -> "Fields":
        self.seen.add(key)
        if key not in self.table:
            if required:
                self.fail(key, "missing table")
            return Fields({}, self.where, self._path(key))
        return Fields(self.table[key], self.where, self._path(key))

    def _path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def raw(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        if key in self.table:
            return self.table[key]
        if default is _REQUIRED:
            self.fail(key, "missing required field")
        return default

    def str(self, key: str, default: Any = None, choices: Iterable[str] | None = None) -> Any:
        v = self.raw(key, _REQUIRED if default is None else default)
        if not isinstance(v, str):
            self.fail(key, f"expected a string, got {_kind(v)}")
        if choices is not None and v not in choices:
            self.fail(key, f"{v!r} is not one of {sorted(choices)}")
        return v

    def int(self, key: str, default: Any = None, lo: int | None = None, hi: int | None = None) -> int:
        v = self.raw(key, _REQUIRED if default is None else default)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {_kind(v)}")
        self._range(key, v, lo, hi)
        return v

    def num(self, key: str, default: Any = None, lo: float | None = None, hi: float | None = None) -> float:
        v = self.raw(key, _REQUIRED if default is None else default)
        return self.check_num(key, v, lo, hi)

    def check_num(self, key: str, v: Any, lo: float | None, hi: float | None) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"expected a finite number, got {_kind(v)}")
        self._range(key, v, lo, hi)
        return float(v)

    def bool(self, key: str, default: Any = None) -> bool:
        v = self.raw(key, _REQUIRED if default is None else default)
        if not isinstance(v, bool):
            self.fail(key, f"expected true or false, got {_kind(v)}")
        return v

    def nums(
        self, key: str, length: int | None, default: Any = None, lo: float | None = None, hi: float | None = None
    ) -> tuple:
        v = self.raw(key, _REQUIRED if default is None else default)
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
            self.fail(key, f"expected a list of {length if length else 'some'} numbers, got {_kind(v)}")
        return tuple(self.check_num(key, x, lo, hi) for x in v)

    def _range(self, key: str, v: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and v < lo:
            self.fail(key, f"{v} is below the minimum {lo}")
        if hi is not None and v > hi:
            self.fail(key, f"{v} is above the maximum {hi}")

    def done(self) -> None:
        """Reject keys that no accessor asked for (typos, unknown parameters)."""
        extra = sorted(set(self.table) - self.seen)
        if extra:
            self.fail(extra[0], "unknown field" + (f" (also: {', '.join(extra[1:])})" if extra[1:] else ""))


_REQUIRED = object()


def _kind(v: Any) -> str:
    return f"{type(v).__name__} {v!r}"[:80]
