"""`ninserve predict` (app/cli/predict.py) against a live server: one image, many, folders, tables,
maps, failures, and where the server URL comes from."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from app.cli.main import build_parser
from app.cli.main import main as cli_main
from app.cli.predict import collect, format_result, map_stems
from tests.app.helpers import png

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """11 images in two sub-folders (more than the shared server's 8 files per batch), plus a
    file that is not an image by name, which is skipped."""
    root = tmp_path / "photos"
    for i in range(11):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img{i:02d}.png").write_bytes(png(i))
    (root / "notes.txt").write_text("not an image")
    return root


def test_one_image_prints_top_k_and_saves_maps(server_url: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "img1.png"
    path.write_bytes(png(1, size=48))
    maps_dir = tmp_path / "maps"
    rc = cli_main(["predict", str(path), "--url", server_url, "--top-k", "3", "--maps", str(maps_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "model tiny@tiny-0001" in out and "48x48" in out
    table = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(table) == 3
    written = sorted(p.name for p in maps_dir.iterdir())
    assert len(written) == 1 + 3 and "img1.grid.png" in written
    for name in written:
        with Image.open(maps_dir / name) as img:
            assert img.format == "PNG"
            assert img.size == (256, 256) or name.endswith("grid.png")


def test_a_folder_goes_through_the_batch_route_into_a_csv(server_url: str, folder: Path, capsys) -> None:
    out_file = folder.parent / "results.csv"
    rc = cli_main(["predict", str(folder), "--url", server_url, "--top-k", "2", "--out", str(out_file)])
    assert rc == 0
    assert f"wrote {out_file}: 11 of 11 images classified" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert [r["file"] for r in rows] == [str(p) for p in collect([folder])]
    assert list(rows[0])[:5] == ["file", "status", "label", "score", "top"]
    for row in rows:
        scores = {c: float(row[c]) for c in CLASSES}
        assert row["status"] == "200" and row["label"] == max(scores, key=scores.get)
        assert abs(sum(scores.values()) - 1) < 1e-4 and len(row["top"].split()) == 2
        assert row["model_version"] == "tiny-0001" and row["id"] and not row["error"]


def test_json_table_with_failures_and_maps(server_url: str, folder: Path, capsys) -> None:
    (folder / "b" / "broken.png").write_bytes(b"nope")
    out_file, maps_dir = folder.parent / "results.json", folder.parent / "maps"
    args = ["predict", str(folder / "a"), str(folder / "b"), "--url", server_url, "--top-k", "1"]
    rc = cli_main([*args, "--out", str(out_file), "--maps", str(maps_dir)])
    captured = capsys.readouterr()
    assert rc == 1  # one image failed
    assert "broken.png" in captured.err and "400" in captured.err
    rows = json.loads(out_file.read_text())
    assert len(rows) == 12
    failed = [r for r in rows if r["status"] != 200]
    assert [Path(r["file"]).name for r in failed] == ["broken.png"]
    assert "broken.png" in failed[0]["error"]["detail"] and "result" not in failed[0]
    ok = [r for r in rows if r["status"] == 200]
    assert all(r["result"]["model"]["version"] == "tiny-0001" for r in ok)
    assert len(list(maps_dir.glob("*.grid.png"))) == 11 and len(list(maps_dir.iterdir())) == 22


def test_failures_and_an_unreachable_server(server_url: str, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    rc = cli_main(["predict", str(bad), str(tmp_path / "missing.png"), "--url", server_url])
    err = capsys.readouterr().err
    assert rc == 1 and "400" in err and "bad.png" in err and "missing.png" in err
    assert cli_main(["predict", str(bad), "--url", "http://127.0.0.1:9", "--timeout", "2"]) == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert cli_main(["predict", str(tmp_path / "empty"), "--url", server_url]) == 1
    assert cli_main(["predict", str(bad), "--url", server_url, "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "--out must end in .csv or .json" in capsys.readouterr().err


def test_a_url_without_its_scheme_is_named_as_such(server_url: str, tmp_path: Path, capsys) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(png(1))
    bare = server_url.removeprefix("http://")  # e.g. 127.0.0.1:8000, with the server running
    assert cli_main(["predict", str(image), "--url", bare]) == 2
    err = capsys.readouterr().err
    assert f"the URL {bare} lacks http://" in err and "make serve" not in err
    assert err.count("\n") == 1


def test_json_lines(server_url: str, tmp_path: Path, capsys) -> None:
    paths = []
    for seed in (3, 4):
        paths.append(tmp_path / f"{seed}.png")
        paths[-1].write_bytes(png(seed))
    assert cli_main(["predict", *map(str, paths), "--url", server_url, "--json", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["file"] for line in lines] == [str(p) for p in paths]
    assert all(len(json.loads(line)["top"]) == 2 for line in lines)


def test_url_from_the_environment_and_help_shows_defaults(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("NINSERVE_URL", raising=False)
    assert build_parser().parse_args(["predict", "x.png"]).url == "http://127.0.0.1:8000"
    monkeypatch.setenv("NINSERVE_URL", "http://10.0.0.5:9000")
    assert build_parser().parse_args(["predict", "x.png"]).url == "http://10.0.0.5:9000"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "NINSERVE_URL" in text and "(default: http://10.0.0.5:9000)" in text and "(default: 5)" in text


def test_map_stems_stay_distinct() -> None:
    assert map_stems([Path("x/cat.jpg"), Path("x/dog.png")]) == ["cat", "dog"]
    stems = map_stems([Path("a/cat.jpg"), Path("b/cat.png"), Path("b/cat.jpg")])
    assert len(set(stems)) == 3 and stems[0] == "a-cat"


def test_format_result() -> None:
    result = {
        "id": "abc",
        "model": {"name": "m", "version": "v"},
        "image": {"width": 3, "height": 4},
        "timing_ms": {"total": 1.5},
        "top": [{"label": "cat", "index": 3, "score": 0.5}],
    }
    text = format_result("x.png", result)
    assert "x.png  3x4  model m@v  1.5 ms" in text and "cat" in text and "#" * 12 in text
    assert io.StringIO(text).readline().startswith("x.png")
