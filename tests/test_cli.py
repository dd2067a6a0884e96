"""The edgeaug command, through typer's CliRunner."""

import json

from typer.testing import CliRunner

from edgeaug.cli import app

runner = CliRunner()


def test_help_explains_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("build", "inspect", "verify", "targets", "demo"):
        assert cmd in r.output
    r = runner.invoke(app, ["build", "--help"])
    assert "--variants" in r.output and "--workers" in r.output and "--val" in r.output


def test_targets_lists_profiles():
    r = runner.invoke(app, ["targets"])
    assert r.exit_code == 0
    assert "rpi4" in r.output and "rpi-zero2w" in r.output and "int8" in r.output


def test_build_inspect_verify(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    r = runner.invoke(
        app,
        [
            "build",
            str(shapes_dir),
            "-o",
            str(out),
            "--target",
            "rpi-zero2w",
            "--variants",
            "2",
            "--seed",
            "4",
            "--workers",
            "1",
            "--val",
            "0.25",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and out.exists()
    r = runner.invoke(app, ["inspect", str(out), "--json"])
    info = json.loads(r.output)
    # No compression, no instances: format version 1, which every loader reads.
    assert info["format_version"] == 1 and info["seed"] == 4 and info["target"] == "rpi-zero2w"
    assert info["records"] == 16 * 3 + 8 and len(info["fingerprint"]) == 64
    r = runner.invoke(app, ["inspect", str(out)])
    assert "int8 [96, 96, 1]" in r.output
    r = runner.invoke(app, ["verify", str(out), "--source", str(shapes_dir), "--sample", "6"])
    assert r.exit_code == 0 and "6/6 regenerated records byte-identical" in r.output


def test_verify_fails_on_changed_source(shapes_dir, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(shapes_dir, data)
    out = tmp_path / "p.lmdb"
    assert (
        runner.invoke(app, ["build", str(data), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q"]).exit_code
        == 0
    )
    victim = sorted((data / "square").iterdir())[0]
    victim.write_bytes(sorted((data / "circle").iterdir())[0].read_bytes())
    r = runner.invoke(app, ["verify", str(out), "--source", str(data)])
    assert r.exit_code == 1
    assert f"square/{victim.name}: content differs" in r.output


def test_errors_are_one_clear_line(tmp_path, shapes_dir):
    r = runner.invoke(app, ["build", str(tmp_path / "missing"), "-o", str(tmp_path / "x.lmdb"), "-t", "rpi4"])
    assert r.exit_code == 2 and "no such file or directory" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[ops]]\nop = "twirl"\n')
    r = runner.invoke(app, ["build", str(shapes_dir), "-o", str(tmp_path / "x.lmdb"), "-t", "rpi4", "-r", str(bad)])
    assert r.exit_code == 2 and "bad.toml: ops[0].op: unknown op 'twirl'" in r.output
    r = runner.invoke(app, ["inspect", str(bad)])
    assert r.exit_code == 2 and "error:" in r.output


def test_demo_runs(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "verify:" in r.output and "OK" in r.output and "loaded train split" in r.output


def test_explain_shows_the_ops_of_a_record(small_pack):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack)) as p:
        r = next(i for i in range(p.records) if p.record_at(i)["variant"] == 2)
        rec = p.record_at(r)
        src = p.manifest["sources"][rec["source"]]["path"]
    out = runner.invoke(app, ["explain", str(small_pack), str(r)])
    assert out.exit_code == 0, out.output
    assert f"record {r}: train" in out.output and repr(src) in out.output and "variant 2" in out.output
    for e in rec["params"]["ops"]:
        assert f"- {e['op']}: " + ("skipped" if not e["on"] else "") in out.output
    js = json.loads(runner.invoke(app, ["explain", str(small_pack), str(r), "--json"]).output)
    assert js["params"] == rec["params"] and (js["source"], js["variant"], js["record"]) == (src, 2, r)
    assert js["split"] == "train" and js["source_index"] == rec["source"] and js["label"] == rec["label"]
    bad = runner.invoke(app, ["explain", str(small_pack), "100000"])
    assert bad.exit_code == 2 and "outside the pack's" in bad.output


def test_preview_writes_a_contact_sheet(small_pack, tmp_path):
    import cv2

    out = tmp_path / "grid.png"
    r = runner.invoke(app, ["preview", str(small_pack), "-o", str(out), "--count", "5"])
    assert r.exit_code == 0, r.output
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape == (2 * (224 + 4) + 4, 3 * (224 + 4) + 4, 3)
    r = runner.invoke(app, ["preview", str(small_pack), "-o", str(out), "--start", "99999"])
    assert r.exit_code == 2 and "--start" in r.output
