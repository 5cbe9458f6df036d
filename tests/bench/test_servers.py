from __future__ import annotations

import pytest

from bench import servers
from bench.servers import Options, artifact_of, build, with_artifacts


def test_int8_twins_follow_each_server_and_as_shipped_stays() -> None:
    names = with_artifacts(["ninserve", "ninserve-int8", "fastapi", "ninserve-v2"], ["fp32", "int8"])
    assert names == ["ninserve", "ninserve@int8", "ninserve-int8", "fastapi", "fastapi@int8", "ninserve-v2"]
    assert with_artifacts(["ninserve", "fastapi"], ["int8"]) == ["ninserve@int8", "fastapi@int8"]
    assert with_artifacts(["fastapi@int8"], ["fp32"]) == ["fastapi@int8"]


def test_artifact_of() -> None:
    assert [artifact_of(n) for n in ("ninserve", "ninserve-int8", "torchserve@int8", "fastapi")] == [
        "fp32",
        "int8",
        "int8",
        "fp32",
    ]


def test_an_int8_twin_is_given_the_int8_file(tmp_path, monkeypatch) -> None:
    opts = Options(
        threads=2, model=tmp_path / "a.onnx", int8_model=tmp_path / "b-int8.onnx", scratch=tmp_path
    )
    peer = build("fastapi@int8", opts)
    assert peer.name == "fastapi@int8" and peer.env["BENCH_MODEL"] == str(opts.int8_model)
    assert build("fastapi", opts).env["BENCH_MODEL"] == str(opts.model)
    monkeypatch.setattr(servers, "_module_version", lambda python, module: "x")
    ours = build("ninserve@int8", opts)
    assert ours.name == "ninserve@int8"
    assert ours.argv[ours.argv.index("--model") + 1] == str(opts.int8_model)
    assert "artifact not found" in (ours.unavailable or "")  # tmp_path holds no file: said, not run


def test_only_known_servers_take_the_suffix() -> None:
    with pytest.raises(ValueError, match="take @int8"):
        build("ninserve-v2@int8", Options(threads=2))
