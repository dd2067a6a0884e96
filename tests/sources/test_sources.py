"""Sources: class folders, CSV and JSONL manifests, odd names, bad rows."""

import json
import shutil

import pytest

from edgeaug.sources.scan import SourceError, scan


def test_folders_with_spaces_and_non_ascii(shapes_dir, tmp_path):
    d = tmp_path / "données"
    (d / "chat noir").mkdir(parents=True)
    (d / "犬").mkdir()
    src = sorted((shapes_dir / "circle").iterdir())
    shutil.copy(src[0], d / "chat noir" / "été 1.png")
    shutil.copy(src[1], d / "犬" / "写真.jpg")
    s = scan(d)
    assert s.classes == ("chat noir", "犬")
    assert [x.rel for x in s.sources] == ["chat noir/été 1.png", "犬/写真.jpg"]
    assert [x.label for x in s.sources] == [0, 1]


def test_csv_and_jsonl_manifests(shapes_dir, tmp_path):
    files = sorted(shapes_dir.rglob("*.png"))[:4]
    csv = shapes_dir.parent / "m.csv"
    csv.write_text(
        "path,label\n" + "".join(f'"{f.relative_to(shapes_dir.parent)}",{i % 2}\n' for i, f in enumerate(files))
    )
    s = scan(csv)
    assert s.classes == ("0", "1") and len(s.sources) == 4 and s.kind == "csv"
    jl = shapes_dir.parent / "m.jsonl"
    jl.write_text(
        "".join(
            json.dumps({"path": str(f.relative_to(shapes_dir.parent)), "label": "dog" if i else "cat"}) + "\n"
            for i, f in enumerate(files)
        )
    )
    s = scan(jl)
    assert s.classes == ("cat", "dog") and s.kind == "jsonl"
    assert s.sources[0].key == scan(jl).sources[0].key  # identity is stable


@pytest.mark.parametrize(
    "body,msg",
    [
        ("file,label\na.png,1\n", "header must have 'path' and 'label'"),
        ("path,label\n,1\n", "m.csv:2: path: missing"),
        ("path,label\na.png,\n", "m.csv:2: label: missing"),
        ("path,label\n../escape.png,1\n", "m.csv:2: path: '../escape.png' escapes"),
        ("path,label\n/etc/passwd,1\n", "m.csv:2: path: '/etc/passwd' escapes"),
        ("path,label\na.png,1\na.png,2\n", "m.csv:3: path: 'a.png' is listed twice"),
        ("path,label\n", "lists no images"),
    ],
)
def test_bad_csv_rows(tmp_path, body, msg):
    p = tmp_path / "m.csv"
    p.write_text(body)
    with pytest.raises(SourceError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        scan(p)


def test_bad_jsonl_and_paths(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"path": "a.png", "label": 1}\nnot json\n')
    with pytest.raises(SourceError, match=r"m\.jsonl:2: invalid JSON"):
        scan(p)
    with pytest.raises(SourceError, match="expected a directory"):
        (tmp_path / "x.txt").write_text("")
        scan(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class subfolders"):
        scan(tmp_path / "empty")
