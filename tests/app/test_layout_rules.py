"""app/layout_rules.py: the path rules config checks before the server starts, without the repository."""

from __future__ import annotations

from pathlib import Path

from app.layout_rules import EXPECTED_LAYOUT, name_problem, repository_problem


def test_model_names_are_url_segments_and_metric_labels() -> None:
    assert name_problem("nin-cifar10") is None and name_problem("pets.v2_b") is None
    for bad in ("", ".hidden", "a/b", "a..b", "x" * 65, "é"):
        assert name_problem(bad) is not None, bad


def test_a_repository_needs_a_well_named_model_with_a_numbered_version(tmp_path: Path) -> None:
    assert repository_problem(tmp_path) == f"model repository {tmp_path} holds no model ({EXPECTED_LAYOUT})"
    (tmp_path / "..bad" / "1").mkdir(parents=True)
    (tmp_path / "..bad" / "1" / "model.onnx").write_bytes(b"")
    (tmp_path / "pets" / "0").mkdir(parents=True)  # not a version: versions start at 1
    (tmp_path / "pets" / "0" / "model.onnx").write_bytes(b"")
    assert repository_problem(tmp_path) is not None
    (tmp_path / "pets" / "2").mkdir()
    (tmp_path / "pets" / "2" / "model-int8.onnx").write_bytes(b"")  # an int8 variant alone serves
    assert repository_problem(tmp_path) is None
    assert "point to its parent" in (repository_problem(tmp_path / "pets") or "")
    assert "is a version folder" in (repository_problem(tmp_path / "pets" / "2") or "")
    assert "holds no model" in (repository_problem(tmp_path / "missing") or "")
