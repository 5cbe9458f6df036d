"""app/repository/layout.py and policy.py: what a repository folder holds, what is skipped and why,
which versions a policy selects and which precision variant loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.layout_rules import name_problem
from app.repository.layout import builtin, scan, single_file
from app.repository.policy import PolicyError, VersionPolicy, parse_policy, pick_precision


def version(root: Path, model: str, v: str, files: tuple[str, ...] = ("model.onnx",)) -> Path:
    folder = root / model / v
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"onnx bytes are checked at load, not at scan")
    return folder


def test_a_repository_lists_models_and_versions_and_skips_what_it_cannot_serve(tmp_path: Path) -> None:
    version(tmp_path, "pets", "1")
    version(tmp_path, "pets", "2", ("model.onnx", "model-int8.onnx"))
    version(tmp_path, "pets", "latest")  # not a number: not a version, not shown
    version(tmp_path, "pets", "0")  # numbered, but versions are positive
    version(tmp_path, "pets", "3", ("model.pt",))  # no ONNX file
    version(tmp_path, "empty", "notes")  # does not look like a model: not shown
    (tmp_path / "lonely").mkdir()
    (tmp_path / "nearly" / "config.json").parent.mkdir()
    (tmp_path / "nearly" / "config.json").write_text("{}")  # a model's config, no versions yet
    version(tmp_path, ".hidden", "1")
    version(tmp_path, "bad..name", "1")
    (tmp_path / "README.md").write_text("files beside models are ignored")
    found = scan(tmp_path)
    assert list(found.models) == ["pets"]
    pets = found.models["pets"]
    assert sorted(pets.versions) == [1, 2] and set(pets.versions[2].files) == {"fp32", "int8"}
    assert [v.label for v in pets.selected()] == ["2"]  # latest 1 by default
    reasons = {(s.model, s.version): s.reason for s in found.skipped}
    assert "positive integers" in reasons[("pets", "0")]
    assert "no model.onnx or model-int8.onnx (found model.pt)" in reasons[("pets", "3")]
    assert "no versions" in reasons[("nearly", None)]
    assert {("pets", "latest"), ("empty", None), ("lonely", None)}.isdisjoint(reasons)
    assert "'..'" in reasons[("bad..name", None)] and "starting with a letter" in reasons[(".hidden", None)]


def test_config_json_sets_labels_policy_and_precision_and_a_bad_one_skips_the_model(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        version(tmp_path, "pets", v)
        version(tmp_path, "broken", v)
    config = {
        "labels": ["cat", "dog"],
        "version_policy": {"specific": {"versions": [1, 3]}},
        "precision": "fp32",
    }
    (tmp_path / "pets" / "config.json").write_text(json.dumps(config))
    (tmp_path / "broken" / "config.json").write_text('{"max_batch_size": 8}')
    found = scan(tmp_path)
    pets = found.models["pets"]
    assert pets.labels == ("cat", "dog") and pets.precision == "fp32"
    assert [v.number for v in pets.selected()] == [1, 3]
    assert "broken" not in found.models
    assert "unknown keys 'max_batch_size'" in next(s.reason for s in found.skipped if s.model == "broken")


@pytest.mark.parametrize(
    ("policy", "selected"),
    [
        (None, [5]),
        ({"latest": {"num_versions": 2}}, [3, 5]),
        ({"all": {}}, [1, 3, 5]),
        ({"specific": {"versions": [1, 4]}}, [1]),
    ],
)
def test_version_policies_select_as_tritons_do(policy: object, selected: list[int]) -> None:
    assert parse_policy(policy).select([5, 1, 3]) == selected


@pytest.mark.parametrize(
    "policy", [{"latest": {"num_versions": 0}}, {"specific": {"versions": []}}, {"newest": {}}, [1]]
)
def test_bad_policies_say_what_is_wrong(policy: object) -> None:
    with pytest.raises(PolicyError):
        parse_policy(policy)


def test_precision_auto_is_int8_on_cpu_and_fp32_on_cuda_unless_pinned_or_missing() -> None:
    both = ("fp32", "int8")
    assert pick_precision("auto", "cpu", both) == "int8"
    assert pick_precision("auto", "cuda", both) == "fp32"
    assert pick_precision("fp32", "cpu", both) == "fp32"
    assert pick_precision("auto", "cpu", ("fp32",)) == "fp32"
    assert pick_precision("int8", "cpu", ("fp32",)) == "fp32"  # falls back to what there is


def test_one_file_and_bundled_repositories(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(b"x")
    assert list(single_file(None, path).models) == ["tiny"]
    assert list(single_file("ninserve", path).models) == ["ninserve"]  # NINSERVE_MODEL_NAME
    bundled = builtin("nin-cifar10", path, tmp_path / "missing-int8.onnx").models["nin-cifar10"]
    assert set(bundled.versions[1].files) == {"fp32"} and bundled.versions[1].label is None


@pytest.mark.parametrize("name", ["a/b", "..", "../etc", "", "-x", "x" * 65, "a b"])
def test_names_that_cannot_be_a_path_segment_or_label_are_refused(name: str) -> None:
    assert name_problem(name) is not None


def test_policy_describes_itself() -> None:
    assert VersionPolicy("latest", num_versions=2).describe() == "latest 2"


def test_a_model_folder_that_cannot_be_listed_is_skipped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version(tmp_path, "pets", "1")
    version(tmp_path, "locked", "1")
    locked, listing = str(tmp_path / "locked"), os.scandir

    def scandir(path: str):  # type: ignore[no-untyped-def]
        if str(path) == locked:  # unreadable, or removed between the repository's listing and its own
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = scan(tmp_path)
    assert list(found.models) == ["pets"]
    (skipped,) = found.skipped
    assert skipped.model == "locked" and skipped.reason == "cannot read the folder: Permission denied"
