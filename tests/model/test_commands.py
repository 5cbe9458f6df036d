"""`ninserve eval`, `export` and `quantize` as commands: what they print while they work and the
figure `eval --write-metadata` stamps into an artifact."""

import json
import shutil

import onnx
import pytest

from app.cli.main import main as cli_main


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_eval_write_metadata_stamps_the_measured_figure(tiny_artifact, synthetic_zip, tmp_path, capsys):
    artifact = tmp_path / "tiny.onnx"
    shutil.copy(tiny_artifact, artifact)
    before = metadata(artifact)
    assert before["val_top1_source"] == "ninserve train: PyTorch bf16 evaluation"
    assert cli_main(["eval", "--model", str(artifact), "--data", str(synthetic_zip), "--write-metadata"]) == 0
    out = capsys.readouterr().out
    measured = out.split("val top-1: ")[1].split()[0]
    after = metadata(artifact)
    assert after["val_top1"] == measured and f"wrote val_top1 {measured} into {artifact}" in out
    assert after["val_top1_source"] == "ninserve eval: ONNX Runtime CPU, 30 held-out images"
    # Only those two entries change; the graph, and so model_version, stays the same.
    unchanged = {k: v for k, v in after.items() if not k.startswith("val_top1")}
    assert unchanged == {k: v for k, v in before.items() if not k.startswith("val_top1")}
    assert onnx.load(str(artifact)).graph == onnx.load(str(tiny_artifact)).graph


def test_eval_report_and_progress_lines(tiny_artifact, synthetic_zip, tmp_path, capsys):
    report = tmp_path / "card"
    args = ["eval", "--model", str(tiny_artifact), "--data", str(synthetic_zip), "--report-dir", str(report)]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"evaluating {tiny_artifact} on the val split of {synthetic_zip}\n")
    assert json.loads((report / "eval.json").read_text())["count"] == 30


def test_export_says_what_it_is_doing(tiny_run, tmp_path, capsys):
    out = tmp_path / "a.onnx"
    assert cli_main(["export", "--checkpoint", str(tiny_run[0] / "checkpoint.pt"), "--out", str(out)]) == 0
    steps = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [s.split()[0] for s in steps] == ["loading", "tracing", "checking", "comparing", "wrote"]


@pytest.mark.parametrize("command", ["eval", "quantize", "export"])
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: " in text and "/work" not in text.split("(default: ")[1][:20]


def test_every_train_flag_has_help(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    options = text.split("options:", 1)[1]
    entries = [e for e in options.split("\n  --")[1:]]
    assert len(entries) >= 20
    for entry in entries:
        flag, _, rest = entry.partition(" ")
        assert len(" ".join(rest.split())) > 10, f"--{flag} has no help"


def test_quantize_calibrates_on_the_count_asked(tiny_artifact, synthetic_zip, tmp_path, capsys):
    out = tmp_path / "int8.onnx"
    args = ["quantize", "--model", str(tiny_artifact), "--out", str(out), "--data", str(synthetic_zip)]
    assert cli_main([*args, "--calibration-images", "16"]) == 0
    assert "calibrated on 16 training images" in capsys.readouterr().out
    assert json.loads(metadata(out)["quantization"])["calibration_images"] == 16


def test_export_prints_its_steps_and_no_library_chatter(tiny_run, tmp_path, capfd):
    out = tmp_path / "a.onnx"
    assert cli_main(["export", "--checkpoint", str(tiny_run[0] / "checkpoint.pt"), "--out", str(out)]) == 0
    printed = capfd.readouterr()
    both = printed.out + printed.err
    assert "torchvision" not in both and "Warning" not in both, both
    assert "parity vs PyTorch" in printed.out


def test_train_without_a_run_dir_writes_an_untracked_run(synthetic_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(synthetic_zip), "--epochs", "1", "--batch-size", "16", "--val-size", "30"]
    assert cli_main([*args, "--name", "smoke", "--max-images", "60"]) == 0
    assert capsys.readouterr().out.startswith("run: runs/smoke\n")
    assert (tmp_path / "runs" / "smoke" / "checkpoint.pt").is_file()
    assert (
        cli_main(["export", "--int8", "--calibration-images", "8"]) == 0
    )  # the latest run, into repository/
    assert sorted(p.name for p in (tmp_path / "repository" / "smoke" / "1").iterdir()) == [
        "model-int8.onnx",
        "model.onnx",
    ]
    assert cli_main(["export"]) == 0  # the next version
    assert (tmp_path / "repository" / "smoke" / "2" / "model.onnx").is_file()
