"""Rewrite a pack's manifest as an attacker would: the change applied, the fingerprint recomputed."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import lmdb

from edgeaug.device import format as F


def set_field(path: list, value) -> Callable[[dict], dict]:
    """A change for :func:`craft_manifest`: ``manifest[path[0]][path[1]]... = value``; returns the manifest."""

    def change(m: dict) -> dict:
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return m

    return change


def drop_field(path: list) -> Callable[[dict], dict]:
    """A change for :func:`craft_manifest`: ``del manifest[path[0]][path[1]]...``; returns the manifest."""

    def change(m: dict) -> dict:
        d = m
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
        return m

    return change


def read_manifest(pack: Path) -> dict:
    env = lmdb.open(str(pack), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        m = json.loads(bytes(txn.get(F.MANIFEST_KEY)))
    env.close()
    return m


def craft_manifest(src: Path, dst: Path, change: Callable[[dict], Any]) -> Path:
    """Copy ``src`` to ``dst``; ``change(manifest)`` edits it in place; the fingerprint is re-signed."""
    shutil.copy(src, dst)
    env = lmdb.open(str(dst), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        m, idx = copy.deepcopy(json.loads(bytes(txn.get(F.MANIFEST_KEY)))), bytes(txn.get(F.INDEX_KEY))
        change(m)
        m["fingerprint"] = F.fingerprint({k: v for k, v in m.items() if k != "fingerprint"}, idx)
        txn.put(F.MANIFEST_KEY, json.dumps(m).encode())
    env.close()
    return dst
