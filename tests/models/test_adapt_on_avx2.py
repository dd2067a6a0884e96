"""adapt-model's promise on an AVX2-only x86 CPU, emulated: qemu-user with ``-cpu Haswell`` (no AVX-512, no VNNI).

onnxruntime picks its int8 kernels by CPU: without VNNI it rewrites int8
QuantizeLinear->DequantizeLinear pairs to uint8 and runs a saturating u8s8
kernel.  This runs the real onnxruntime under an emulated AVX2 CPU (cpuid says
Haswell), so the check holds whatever CPU runs the suite.  It needs an x86_64
host and qemu-user-static (the Pi sandbox installs it); otherwise it skips.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime.quantization")
from scripts_under_test import load  # noqa: E402

pisandbox = load("pisandbox")

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
from pathlib import Path
from onnx_models import ArrayReader, conv_classifier, quantize
from edgeaug.models.adapt import adapt_model

d = Path(sys.argv[1])
rng = np.random.default_rng(0)
calib = [(rng.random((1, 3, 8, 8)) * 4.5 - 2).astype(np.float32) for _ in range(8)]
q8 = quantize(conv_classifier(d / "conv.onnx"), d / "q8.onnx", ArrayReader("x", calib), activation="int8")
adapt_model(q8, d / "adapted.onnx")
m = onnx.load(str(q8))
qn = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
init = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
s, zp = init[qn.input[1]], init[qn.input[2]]
x = (np.random.default_rng(7).random((16, 3, 8, 8)) * 5 - 2.5).astype(np.float32)
q = np.clip(np.rint(x / s) + zp, -128, 127).astype(np.int8)

def run(path, feed):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: feed})[0]

a, b = run(q8, x), run(d / "adapted.onnx", q)
print(json.dumps({"equal": bool(np.array_equal(a, b)), "max_diff": float(np.abs(a - b).max())}))
"""


def test_adapted_int8_model_is_bit_identical_on_an_emulated_avx2_cpu(tmp_path):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("emulates an x86 CPU on an x86_64 host only")
    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        pytest.skip("EDGEAUG_SKIP_PI=1: qemu tests skipped")
    try:
        pisandbox.ensure_qemu(install=True)
    except pisandbox.PiSandboxUnavailable as e:
        pytest.skip(f"qemu-user-static unavailable: {e}")
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-user-static has no x86_64 emulator here")
    # qemu-user runs the real interpreter binary; the venv's packages come in through PYTHONPATH.
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(REPO), str(REPO / "tests")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    exe = os.path.realpath(sys.executable)
    r = subprocess.run(
        [qemu, "-cpu", "Haswell", exe, "-c", CHECK, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.strip().splitlines()[-1]
    assert out == '{"equal": true, "max_diff": 0.0}', out
