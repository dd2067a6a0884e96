"""Online flip and shift (edgeaug.device.online): the per-record draws and the fill value of the border."""

from __future__ import annotations

import numpy as np
import pytest

from edgeaug.device.online import fill_value, online_params, quantized_value

# --- determinism -------------------------------------------------------------------


def test_params_are_a_function_of_seed_epoch_record_only():
    records = np.arange(1000)
    flips, shifts = online_params(7, 3, records, 0.5, 4)
    # Any subset, order or batch split gives the same per-record draws.
    perm = np.random.default_rng(1).permutation(1000)
    f2, s2 = online_params(7, 3, perm, 0.5, 4)
    assert np.array_equal(f2, flips[perm]) and np.array_equal(s2, shifts[perm])
    for bs in (1, 3, 64):
        parts = [online_params(7, 3, perm[i : i + bs], 0.5, 4) for i in range(0, 1000, bs)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), flips[perm])
        assert np.array_equal(np.concatenate([p[1] for p in parts]), shifts[perm])
    online_params(7, 4, records, 0.5, 4)  # other calls in between change nothing
    assert np.array_equal(online_params(7, 3, records, 0.5, 4)[1], shifts)


def test_params_differ_across_epochs_and_seeds_and_follow_the_probabilities():
    records = np.arange(4000)
    f3, s3 = online_params(7, 3, records, 0.5, 4)
    f4, s4 = online_params(7, 4, records, 0.5, 4)
    g3, t3 = online_params(8, 3, records, 0.5, 4)
    assert (f3 != f4).mean() > 0.4 and (s3 != s4).any(axis=1).mean() > 0.9
    assert (f3 != g3).mean() > 0.4 and (s3 != t3).any(axis=1).mean() > 0.9
    assert abs(f3.mean() - 0.5) < 0.03
    assert s3.min() == -4 and s3.max() == 4
    counts = np.bincount(s3.reshape(-1) + 4, minlength=9)
    assert counts.min() > 0.8 * counts.mean()  # uniform over [-4, 4]
    assert online_params(7, 3, records, 0.3, 4)[0].mean() == pytest.approx(0.3, abs=0.03)


def test_params_use_no_global_rng():
    np.random.seed(0)
    a = online_params(1, 2, np.arange(50), 0.5, 3)
    np.random.seed(12345)
    np.random.random(10)
    b = online_params(1, 2, np.arange(50), 0.5, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "kw",
    [dict(hflip=-0.1, shift=1), dict(hflip=1.5, shift=1), dict(hflip=0.5, shift=-1), dict(hflip=0.5, shift=1.5)],
)
def test_params_reject_bad_arguments(kw):
    with pytest.raises(ValueError):
        online_params(0, 0, np.arange(3), **kw)


def test_params_reject_negative_records_and_epochs():
    with pytest.raises(ValueError, match="records"):
        online_params(0, 0, np.array([1, -1]), 0.5, 1)
    with pytest.raises(ValueError, match="epoch"):
        online_params(0, -1, np.arange(3), 0.5, 1)


# --- fill value --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rpi4", "rpi-zero2w", "coral-edgetpu", "jetson-nano", "generic"])
@pytest.mark.parametrize("pixel", [0, 114, 255])
def test_fill_value_matches_the_builders_quantization_table(name, pixel):
    from edgeaug.config.targets import load_target, quantization_lut

    t = load_target(name)
    lut = quantization_lut(t)
    got = quantized_value(t.to_dict(), pixel)
    assert got.dtype == lut.dtype and got.tobytes() == lut[pixel].tobytes()
    manifest = {"target": t.to_dict(), "recipe": {"fill": pixel}}
    assert fill_value(manifest).tobytes() == lut[pixel].tobytes()


def test_fill_value_of_a_normalized_int8_target_is_not_zero():
    target = {"channels": 3, "dtype": "int8", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    target.update(scale=0.0186, zero_point=-14)
    v = quantized_value(target, 0)
    expect = np.clip(np.rint((0 - np.array(target["mean"])) / target["std"] / 0.0186) - 14, -128, 127)
    assert v.tolist() == expect.astype(np.int8).tolist() and (v != 0).all()
