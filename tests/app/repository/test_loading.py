"""app/repository/loading.py without a server: which variant loads, and one version loaded,
warmed up and handed over with its batcher not yet started."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.core.engine import ModelLoadError
from app.repository.layout import ModelSource, VersionSource
from app.repository.loading import load_version, variant


def test_the_variant_follows_config_then_settings_then_what_the_version_has(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    both = VersionSource(1, {"fp32": tmp_path / "model.onnx", "int8": tmp_path / "model-int8.onnx"})
    fp32_only = VersionSource(1, {"fp32": tmp_path / "model.onnx"})
    settings = make_settings(precision="auto")
    assert variant(ModelSource("m", {1: both}), both, settings, "cpu") == "int8"  # auto: int8 on a CPU
    assert variant(ModelSource("m", {1: both}), both, settings, "cuda") == "fp32"
    assert variant(ModelSource("m", {1: both}, precision="fp32"), both, settings, "cpu") == "fp32"  # pinned
    assert (
        variant(ModelSource("m", {1: fp32_only}), fp32_only, make_settings(precision="int8"), "cpu") == "fp32"
    )


def test_a_version_loads_named_by_the_repository_with_its_batcher_not_started(
    make_settings: Callable[..., Settings], tiny_model: Path, tmp_path: Path
) -> None:
    settings = make_settings()
    version = VersionSource(7, {"fp32": tiny_model}, label="7")
    source = ModelSource("pets", {7: version})
    gate = threading.BoundedSemaphore(1)

    async def main() -> None:
        served = await load_version(
            source, version, settings, precision="fp32", run_pixels=65536, run_gate=gate, cost=123
        )
        assert (served.name, served.version, served.precision, served.memory) == ("pets", "7", "fp32", 123)
        assert served.in_flight == 0 and not served.retired
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not an onnx file")
        bad = VersionSource(1, {"fp32": broken}, label="1")
        with pytest.raises(ModelLoadError, match="cannot load"):
            await load_version(
                ModelSource("bad", {1: bad}),
                bad,
                settings,
                precision="fp32",
                run_pixels=65536,
                run_gate=gate,
                cost=1,
            )

    asyncio.run(main())
