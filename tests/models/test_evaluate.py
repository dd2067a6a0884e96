"""Pack -> onnxruntime with no conversion: eval, and the loader's bench --model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from onnx_models import ArrayReader, conv_classifier, quantize  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeaug.builder.pipeline import build  # noqa: E402
from edgeaug.cli import app  # noqa: E402
from edgeaug.device.loader import Pack  # noqa: E402
from edgeaug.device.loader import main as loader_main  # noqa: E402
from edgeaug.models.adapt import adapt_model  # noqa: E402
from edgeaug.models.evaluate import evaluate  # noqa: E402
from edgeaug.models.from_model import write_target  # noqa: E402
from edgeaug.models.profile import ModelError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(shapes_dir, tmp_path_factory):
    """A 16x16 QDQ classifier, its target, its adapted model, and a pack built for it."""
    d = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    f = conv_classifier(d / "c.onnx", classes=4, size=16)
    q = quantize(f, d / "cq.onnx", ArrayReader("x", [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]))
    target = write_target(q, d / "cq.toml")
    adapt_model(q, d / "cq_u8.onnx")
    build(shapes_dir, d / "p.lmdb", target, variants=1, seed=2, workers=1, val=0.25)
    return {"float": f, "qdq": q, "adapted": d / "cq_u8.onnx", "pack": d / "p.lmdb", "target": target}


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_batches_go_straight_into_session_run(setup):
    adapted, qdq, t = session(setup["adapted"]), session(setup["qdq"]), setup["target"]
    with Pack(str(setup["pack"])) as pack:
        assert pack.input_name == adapted.get_inputs()[0].name == "x"
        for x, _ in pack.batches(8, epoch=0):
            assert x.dtype == np.uint8 and x.shape[1:] == (3, 16, 16)
            y = adapted.run(None, {pack.input_name: x})[0]
            # the float path: the QDQ model re-quantizes (q - zp) * scale to exactly q
            xf = ((x.astype(np.float32) - t.zero_point) * np.float32(t.scale)).astype(np.float32)
            assert np.array_equal(y, qdq.run(None, {"x": xf})[0])


def test_eval_accuracy_matches_a_record_by_record_count(setup):
    r = evaluate(setup["pack"], setup["adapted"], batch_size=5)
    sess = session(setup["adapted"])
    with Pack(str(setup["pack"]), "val") as pack:
        correct = sum(
            int(np.argmax(sess.run(None, {"x": pack[i][0][None]})[0])) == pack[i][1] for i in range(len(pack))
        )
        n = len(pack)
    assert r["split"] == "val" and r["samples"] == r["labelled"] == n == 8  # 2 of 6 per class
    assert r["correct"] == correct and r["accuracy"] == pytest.approx(correct / n)
    assert r["samples_per_s"] > 0 and r["model_samples_per_s"] >= r["samples_per_s"]
    t = evaluate(setup["pack"], setup["adapted"], split="train")
    with Pack(str(setup["pack"]), "train") as pack:
        assert t["split"] == "train" and t["samples"] == len(pack)


def test_eval_refuses_a_model_that_needs_conversion(setup):
    with pytest.raises(ModelError, match="adapt-model"):
        evaluate(setup["pack"], setup["qdq"])  # float input, uint8 pack


def test_cli_eval(setup):
    r = CliRunner().invoke(app, ["eval", str(setup["pack"]), "--model", str(setup["adapted"])])
    assert r.exit_code == 0, r.output
    assert "[val]: accuracy" in r.output and "samples/s" in r.output
    r = CliRunner().invoke(app, ["eval", str(setup["pack"]), "--model", str(setup["float"])])
    assert r.exit_code == 2 and "adapt-model" in r.output


def test_loader_bench_runs_the_model(setup, capsys):
    rc = loader_main(
        ["bench", str(setup["pack"]), "--model", str(setup["adapted"]), "--seconds", "0.2", "--batch", "4"]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "samples/s through cq_u8.onnx" in out.out
    rc = loader_main(["bench", str(setup["pack"]), "--model", str(setup["qdq"]), "--seconds", "0.1"])
    assert rc == 2 and "the pack holds uint8" in capsys.readouterr().err


def test_loader_bench_without_onnxruntime_says_so(setup):
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # makes `import onnxruntime` fail
        "from edgeaug.loader import main\n"
        f"sys.exit(main(['bench', {str(setup['pack'])!r}, '--model', {str(setup['adapted'])!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "--model needs onnxruntime" in r.stderr
