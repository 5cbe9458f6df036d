"""app/cli/main.py: every error a user can fix is one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import pytest

from app.cli.main import main as cli_main
from tests.app.helpers import png


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # no traceback
    return lines[0]


def test_eval_on_missing_data(capsys) -> None:
    assert cli_main(["eval", "--data", "/nope.zip"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("ninserve eval: no data at /nope.zip") and ".zip" in line


def test_eval_on_a_split_the_data_does_not_have(tmp_path: Path, capsys) -> None:
    data = tmp_path / "train-only.zip"
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("train/cat/0.png", png(0))
    assert cli_main(["eval", "--data", str(data), "--split", "test"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "no images under test/<class>/" in line and "(it holds: train)" in line and "--split val" in line


def test_eval_on_a_file_that_is_not_data(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "data.zip"
    junk.write_text("not a zip")
    assert cli_main(["eval", "--data", str(junk)]) == 1
    assert "is not a zip archive" in one_line(capsys.readouterr().err)
    assert cli_main(["eval", "--model", str(tmp_path / "none.onnx")]) == 1
    assert "no model at" in one_line(capsys.readouterr().err)


def test_write_metadata_needs_the_validation_split(capsys) -> None:
    assert cli_main(["eval", "--split", "test", "--write-metadata"]) == 1
    assert "--split val" in one_line(capsys.readouterr().err)


def test_model_commands_without_the_train_extra_name_it(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "model.export", raising=False)
    assert cli_main(["export"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("ninserve export: needs the `train` extra (module 'onnx'")
    assert "pip install 'ninserve[cpu,train]'" in line


def test_a_missing_file_is_one_line(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args) -> int:
        return len(Path(tmp_path / "absent.pt").read_bytes())

    monkeypatch.setattr("app.cli.commands._predict", handler)
    assert cli_main(["predict", "x.png"]) == 1
    assert (
        one_line(capsys.readouterr().err)
        == f"ninserve predict: No such file or directory: {tmp_path}/absent.pt"
    )


def test_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("app.cli.commands._predict", handler)
    with pytest.raises(ZeroDivisionError):
        cli_main(["predict", "x.png"])


def test_help_lists_every_command() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        cli_main(["--help"])
    for command in ("serve", "predict", "train", "export", "quantize", "eval"):
        assert command in out.getvalue()


def test_help_summarises_every_command_and_documents_every_option() -> None:
    """--help is the first thing a user reads: the top line names every command, each command has
    a description, and each option says what it does."""
    from app.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        assert name in parser.description
        assert command.description, f"`ninserve {name} --help` has no description"
        undocumented = [
            a.option_strings[-1] for a in command._actions if a.option_strings and a.help in (None, "")
        ]
        assert undocumented == [], f"ninserve {name}: options without help: {undocumented}"
