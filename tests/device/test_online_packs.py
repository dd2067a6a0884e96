"""Online flip and shift on real packs: batches equal the reference for every reader, layout and dtype."""

from __future__ import annotations

import numpy as np
import pytest
from online_reference import DTYPES, LAYOUTS
from online_reference import reference as _reference

from edgeaug.device.online import fill_value, online_params

# --- with a real pack --------------------------------------------------------------


@pytest.mark.parametrize("reader,prefetch", [("mmap", False), ("pread", True)])
def test_online_batches_do_not_depend_on_batch_size_and_match_the_records(small_pack, reader, prefetch):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader=reader) as p:
        fill = fill_value(p.manifest)
        runs = {
            bs: [x.copy() for x, _ in p.batches(bs, epoch=2, hflip=0.5, shift=20, prefetch=prefetch)]
            for bs in (1, 4, 7)
        }
        whole = np.concatenate(runs[1])
        for bs in (4, 7):
            assert np.concatenate(runs[bs]).tobytes() == whole.tobytes()
        order = p.epoch_order(2)
        flips, shifts = online_params(p.seed, 2, order, 0.5, 20)
        assert flips.any() and not flips.all()
        for j, i in enumerate(order.tolist()):
            ref = _reference(np.asarray(p[i][0]), "NHWC", flips[j], *shifts[j], fill)
            assert whole[j].tobytes() == ref.tobytes()
        recs = [p.record(i, epoch=2, hflip=0.5, shift=20) for i in order[:5].tolist()]
        assert all(r["x"].tobytes() == whole[j].tobytes() for j, r in enumerate(recs))
        other = np.concatenate([x.copy() for x, _ in p.batches(4, epoch=3, hflip=0.5, shift=20)])
        assert other.tobytes() != whole.tobytes()  # a new epoch, new draws
        seen = [idx for _, _, idx in p.batches(4, epoch=2, hflip=0.5, shift=20, with_index=True)]
        assert np.concatenate(seen).tolist() == order.tolist()
        plain = np.concatenate([x.copy() for x, _ in p.batches(4, epoch=2)])
        assert plain.tobytes() == np.concatenate([np.asarray(p[i][0])[None] for i in order]).tobytes()
        with pytest.raises(ValueError, match="shift"):
            next(p.batches(4, epoch=2, shift=10_000))


# --- during the read: every reader, layout and dtype -------------------------------

SYNTH_TARGET = """[device]
name = "synth"
arch = "any"
word_size = 64
[input]
height = 10
width = {width}
channels = {channels}
layout = "{layout}"
color = "{color}"
dtype = "{dtype}"
mean = {mean}
std = {std}
{quant}"""


@pytest.fixture(scope="module")
def synth_packs(shapes_dir, tmp_path_factory):
    """Small packs (10x12 records, inline in leaf pages) for every layout x dtype, and one 1-channel.

    Two more are 16 wide, so rows of 1-byte pixels take the mirror's 8-byte word path.
    """
    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("synth")
    out = {}
    kinds = [
        (lay, dt, c, 12)
        for lay in LAYOUTS
        for dt in DTYPES
        for c in ((3, 1) if (lay, dt) == ("NHWC", "int8") else (3,))
    ]
    for layout, dtype, channels, width in kinds + [("NHWC", "int8", 1, 16), ("NCHW", "uint8", 3, 16)]:
        name = f"{layout}-{dtype}-{channels}" + ("" if width == 12 else f"-w{width}")
        c = channels
        (d / f"{name}.toml").write_text(
            SYNTH_TARGET.format(
                width=width,
                layout=layout,
                dtype=dtype,
                channels=c,
                color="RGB" if c == 3 else "GRAY",
                mean=[0.5] * c if dtype.startswith("float") else [0.0] * c,
                std=[0.25] * c if dtype.startswith("float") else [1.0] * c,
                quant=""
                if dtype.startswith("float")
                else f"scale = {1 / 255}\nzero_point = {-128 if dtype == 'int8' else 0}\n",
            )
        )
        path = d / f"{name}.lmdb"
        build(shapes_dir, path, d / f"{name}.toml", variants=1, seed=2, workers=1, val=0.25)
        out[name] = path
    return out


def _expected(p, order, epoch, hflip, shift, layout) -> np.ndarray:
    flips, shifts = online_params(p.seed, epoch, order, hflip, shift)
    fill = fill_value(p.manifest)
    return np.stack(
        [_reference(np.asarray(p[i][0]), layout, f, *s, fill) for i, f, s in zip(order.tolist(), flips, shifts)]
    )


# (hflip, shift) settings: shift only (positive, negative and zero draws), flips only, both, every record flipped.
SETTINGS = [(0.0, 3), (1.0, 0), (0.5, 4), (1.0, 9)]
WAYS = [("pread", True), ("pread", False), ("mmap-gather", False), ("mmap-copy", True), ("mmap-copy", False)]


@pytest.mark.parametrize("way,prefetch", WAYS)
def test_online_batches_equal_the_reference_for_every_reader_layout_and_dtype(synth_packs, monkeypatch, way, prefetch):
    from edgeaug.device import batchread
    from edgeaug.device.loader import Pack

    if way == "mmap-copy":  # the per-record copy path, which the defaults keep for records >= 64 KB
        monkeypatch.setattr(batchread, "_SMALL_RECORD", 0)
    for name, path in synth_packs.items():
        layout = name.split("-")[0]
        with Pack(str(path), reader=way.split("-")[0], backend="pure") as p:
            assert p._reader.small == (way != "mmap-copy")
            for epoch, (hflip, shift) in enumerate(SETTINGS):
                got = np.concatenate(
                    [x.copy() for x, _ in p.batches(3, epoch=epoch, hflip=hflip, shift=shift, prefetch=prefetch)]
                )
                order = p.epoch_order(epoch)
                assert (
                    got.dtype == p.dtype and got.tobytes() == _expected(p, order, epoch, hflip, shift, layout).tobytes()
                ), (name, hflip, shift)
                if shift:
                    s = online_params(p.seed, epoch, order, hflip, shift)[1]
                    assert (s > 0).any() and (s < 0).any() and (s == 0).any(), "draws cover every sign"
                if hflip == 0.5:
                    f = online_params(p.seed, epoch, order, hflip, shift)[0]
                    assert f.any() and not f.all()


@pytest.mark.parametrize("reader", ["pread", "mmap"])
def test_online_reads_of_large_records_equal_the_reference(small_pack, reader):
    """The rpi4 pack: 150 KB records in overflow pages (pread at offsets, mmap per-record copies)."""
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader=reader) as p:
        assert not p._reader.small
        for epoch, (hflip, shift) in enumerate(SETTINGS):
            got = np.concatenate([x.copy() for x, _ in p.batches(5, epoch=epoch, hflip=hflip, shift=shift)])
            order = p.epoch_order(epoch)
            assert got.tobytes() == _expected(p, order, epoch, hflip, shift, "NHWC").tobytes(), (hflip, shift)


def test_gathered_rows_near_the_file_ends_are_moved_within_their_row(synth_packs):
    """A move that would gather from before the file's start or past its end moves the tensor in its row."""
    from edgeaug.device.loader import Pack

    with Pack(str(synth_packs["NHWC-uint8-3"]), reader="mmap") as p:
        r, nb = p._reader, p.nbytes
        recs = np.arange(4)
        r.gather(recs)  # headers checked
        r._toff = r._toff.copy()
        r._toff[recs] = [2, r.file_size - nb - 3, 2, r.file_size - nb]  # tensors at the file's ends (as read)
        plain = r.gather(recs).copy()
        moves = np.array([nb - 1, -5, 3, -(nb - 1)])  # each would gather from outside the file
        got = r.gather(recs, moves)
        for j, m in enumerate(moves.tolist()):
            if m > 0:
                assert got[j, m:].tobytes() == plain[j, : nb - m].tobytes()
            else:
                assert got[j, : nb + m].tobytes() == plain[j, -m:].tobytes()


def test_moves_as_large_as_the_tensor_are_refused(small_pack):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader="pread") as p:
        x = np.empty((1,) + p.shape, p.dtype)
        with pytest.raises(ValueError, match="moves"):
            p._reader.fill_pread(x, np.array([0]), np.array([p.nbytes]))
        p._reader.fill_pread(x, np.array([0]), np.array([p.nbytes - 1]))  # the largest possible move reads
        assert x.reshape(-1).view(np.uint8)[-1] == p.record_at(0)["x"].reshape(-1).view(np.uint8)[0]
