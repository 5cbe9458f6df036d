"""Every tool names a model: `ninserve predict --model NAME[:VERSION]`, `ninserve models`,
`Client(model=...)` and `Client.classify(..., model=, version=)` against a two-model repository
server; and the messages for a wrong URL, TLS asked of a plain-HTTP server, an unknown model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.main import build_parser
from app.cli.main import main as cli_main
from app.cli.reach import parse_model
from app.client import ApiError, Client
from tests.app.helpers import build_tiny_model, live_server, png

SHAPES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def repo_url(make_settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pets` (CIFAR labels, version 1) and `shapes` (three labels, versions 1 and 2, both
    loaded: the policy keeps 2)."""
    root = tmp_path_factory.mktemp("repo")
    for folder in ("pets/1", "shapes/1", "shapes/2"):
        (root / folder).mkdir(parents=True)
    build_tiny_model(root / "pets" / "1" / "model.onnx")
    for version, seed in (("1", 1), ("2", 2)):
        build_tiny_model(root / "shapes" / version / "model.onnx", classes=SHAPES, seed=seed)
    (root / "shapes" / "config.json").write_text('{"version_policy": {"latest": {"num_versions": 2}}}')
    settings = make_settings(model_path=None, model_repository=root, model_name="pets")
    with live_server(settings) as url:
        yield url


def test_predict_names_a_model_and_a_version(repo_url: str, tmp_path: Path, capsys) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png(1))
    for spec, version in (("shapes", "2"), ("shapes:1", "1")):
        assert cli_main(["predict", str(image), "--url", repo_url, "--model", spec, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["model"] == {"name": "shapes", "version": version} | {
            k: v for k, v in result["model"].items() if k not in ("name", "version")
        }
        assert {t["label"] for t in result["top"]} <= set(SHAPES)
    assert (
        cli_main(["predict", str(image), str(image), "--url", repo_url, "--model", "shapes:1", "--json"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"]["version"] for r in lines] == ["1", "1"]  # the batch route, one version


def test_predict_names_an_unknown_model_or_version(repo_url: str, tmp_path: Path, capsys) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png(1))
    assert cli_main(["predict", str(image), "--url", repo_url, "--model", "nope"]) == 2
    assert "no model 'nope' loaded (loaded: pets, shapes; see `ninserve models`)" in capsys.readouterr().err
    assert cli_main(["predict", str(image), "--url", repo_url, "--model", "shapes:7"]) == 2
    assert "model 'shapes' has no version '7' loaded (loaded: 1, 2)" in capsys.readouterr().err
    assert cli_main(["predict", str(image), "--url", repo_url, "--model", ":3"]) == 2


def test_models_lists_every_loaded_version(repo_url: str, capsys) -> None:
    assert cli_main(["models", "--url", repo_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "PRECISION", "CLASSES", "VAL", "TOP-1"]
    rows = [line.split()[:2] for line in lines[1:]]
    assert rows == [["pets", "1"], ["shapes", "1"], ["shapes", "2"]]
    assert lines[1].endswith("default latest") and "circle, square, triangle" in lines[2]
    assert cli_main(["models", "--url", repo_url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["models"]) == 3


def test_the_client_names_a_model(repo_url: str) -> None:
    with Client(repo_url) as client:
        assert {(m["name"], m["version"]) for m in client.models()} == {
            ("pets", "1"),
            ("shapes", "1"),
            ("shapes", "2"),
        }
        assert client.classify(png(2))["model"]["name"] == "pets"  # the default model
        one = client.classify(png(2), model="shapes", version="1")
        assert one["model"]["version"] == "1" and one["top"][0]["label"] in SHAPES
        batch = client.classify_batch([png(1), png(2)], model="shapes")
        assert [e["result"]["model"]["version"] for e in batch] == ["2", "2"]
        with pytest.raises(ApiError) as missing:
            client.classify(png(2), model="nope")
        assert missing.value.status == 404
        with pytest.raises(ValueError, match="a version needs a model"):
            client.classify(png(2), version="1")
    with Client(repo_url, model="shapes", version="1") as pinned:
        assert pinned.classify(png(3))["model"]["version"] == "1"
        assert pinned.classify(png(3), model="pets")["model"]["name"] == "pets"  # a call's own wins


def test_a_url_with_the_api_path_is_named(repo_url: str, tmp_path: Path, capsys) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png(1))
    assert cli_main(["predict", str(image), "--url", repo_url + "/v1"]) == 2
    err = capsys.readouterr().err
    assert f"{repo_url}/v1 is an API path; give the server's base URL: --url {repo_url}" in err
    assert "Not Found" not in err and err.count("\n") == 1


def test_https_to_the_plain_http_server_says_so(repo_url: str, tmp_path: Path, capsys) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png(1))
    tls = repo_url.replace("http://", "https://")
    assert cli_main(["predict", str(image), "--url", tls, "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert f"{tls} does not answer TLS" in err and f"use {repo_url}" in err and "make serve" not in err


def test_model_specs_and_the_version_flag(capsys) -> None:
    assert parse_model("shapes:2") == ("shapes", "2") and parse_model("shapes") == ("shapes", None)
    assert parse_model(None) == (None, None)
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "ninserve 0.1.0"
