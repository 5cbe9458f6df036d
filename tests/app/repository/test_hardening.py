"""The repository priced and bounded like a request: hostile config.json files, loads that never
end or expand, files that are not what they claim, deletion as rollback, and the bookkeeping a
long-running server must not accumulate. Each runs the registry without HTTP (fast); the HTTP
answers are in test_serving.py."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.core.errors import ModelNotFound, ModelUnloaded
from app.core.memory import plan_for
from app.repository import config_file, layout
from app.repository.registry import Registry
from tests.app.helpers import build_tiny_model
from tests.app.repository import hostile_models


def put(root: Path, model: str, version: int, seed: int = 0) -> Path:
    folder = root / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return build_tiny_model(folder / "model.onnx", version=f"{model}-{version}", seed=seed)


def folder(root: Path, model: str, version: int = 1) -> Path:
    path = root / model / str(version)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def registry_for(make_settings: Callable[..., Settings]) -> Callable[..., Registry]:
    def make(root: Path, default: str = "good", **overrides: object) -> Registry:
        settings = make_settings(model_path=None, model_repository=root, **overrides)
        return Registry(settings, plan_for(settings), layout.Scanner(root), default)

    return make


def states(models: Registry) -> dict[tuple[str, str | None], tuple[str, str]]:
    return {(e.name, e.version): (e.state, e.reason) for e in models.index()}


# --- 1: config.json bounded in size and depth; one model's files never stop the others ---------


def test_a_deeply_nested_or_huge_config_json_skips_only_its_model(tmp_path: Path, registry_for) -> None:
    put(tmp_path, "good", 1)
    put(tmp_path, "deep", 1)
    put(tmp_path, "huge", 1)
    (tmp_path / "deep" / "config.json").write_text("[" * 60_000)  # RecursionError in json.loads, under 64 KB
    (tmp_path / "huge" / "config.json").write_bytes(b" " * (1 << 20) + b"{}")
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        assert models.resolve("good").version == "1"
        assert await models.load("good") == []  # loads of any model still work
        with pytest.raises(ModelNotFound, match="nested deeper than 8"):
            await models.load("deep")
        await models.poll()  # a poll pass does not fail either
        await models.stop()

    asyncio.run(main())
    found = states(models)
    assert "larger than 64 KB" in found[("huge", None)][1]


def test_an_exception_from_one_models_files_skips_that_model_only(tmp_path: Path, monkeypatch) -> None:
    put(tmp_path, "good", 1)
    put(tmp_path, "odd", 1)
    real = layout.Scanner._model

    def model(self, name, *args):  # type: ignore[no-untyped-def]
        if name == "odd":
            raise MemoryError("anything at all")
        return real(self, name, *args)

    monkeypatch.setattr(layout.Scanner, "_model", model)
    found = layout.scan(tmp_path)
    assert list(found.models) == ["good"]
    assert "MemoryError" in next(s.reason for s in found.skipped if s.model == "odd")


# --- 3: the warm-up has a deadline; unloading a LOADING model cancels it --------------------


def test_a_warm_up_past_its_deadline_fails_with_its_reason_and_returns_its_charge(
    tmp_path: Path, registry_for
) -> None:
    put(tmp_path, "good", 1)
    hostile_models.endless_loop(folder(tmp_path, "loop") / "model.onnx")
    models = registry_for(tmp_path, model_warmup_timeout_s=1.0)

    async def main() -> None:
        await models.start()
        used = models.used_bytes
        started = time.monotonic()
        failures = await models.load("loop")
        assert time.monotonic() - started < 10
        assert failures and "warm-up took longer than 1 s" in failures[0]
        assert models.used_bytes == used  # its charge came back
        await models.stop()

    asyncio.run(main())
    assert "NINSERVE_MODEL_WARMUP_TIMEOUT_S" in states(models)[("loop", "1")][1]


def test_unloading_a_loading_model_cancels_its_warm_up(tmp_path: Path, registry_for) -> None:
    put(tmp_path, "good", 1)
    models = registry_for(tmp_path, model_warmup_timeout_s=600.0)

    async def main() -> None:
        await models.start()
        hostile_models.endless_loop(folder(tmp_path, "loop") / "model.onnx")
        used = models.used_bytes
        loading = asyncio.create_task(models.load("loop"))
        while states(models).get(("loop", "1"), ("",))[0] != "LOADING":
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # inside the endless warm-up
        started = time.monotonic()
        await asyncio.wait_for(models.unload("loop"), 10)
        failures = await asyncio.wait_for(loading, 10)
        assert time.monotonic() - started < 10
        assert failures and "unloaded while it loaded" in failures[0]
        assert models.used_bytes == used
        await models.stop()

    asyncio.run(main())


# --- 4: validated and priced before loading; charged what it takes ---------------------------


def test_broken_and_oversized_files_are_refused_before_they_are_priced(tmp_path: Path, registry_for) -> None:
    put(tmp_path, "good", 1)
    whole = put(tmp_path, "cut", 1).read_bytes()
    (tmp_path / "cut" / "1" / "model.onnx").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "far" / "1").mkdir(parents=True)
    hostile_models.external_outside(tmp_path / "far" / "1" / "model.onnx", "../../../../etc/hostname")
    (tmp_path / "big" / "1").mkdir(parents=True)
    hostile_models.with_metadata(tmp_path / "big" / "1" / "model.onnx", native_size="2048")
    (tmp_path / "bomb" / "1").mkdir(parents=True)
    hostile_models.expanding(tmp_path / "bomb" / "1" / "model.onnx", 10**9, from_initializer=True)
    hostile_models.renamed_output(folder(tmp_path, "probs") / "model.onnx")
    (tmp_path / "bomb2" / "1").mkdir(parents=True)
    hostile_models.expanding(tmp_path / "bomb2" / "1" / "model.onnx", 10**9, from_initializer=False)
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        await models.stop()

    asyncio.run(main())
    found = states(models)
    assert found[("good", "1")][0] == "READY"
    assert "is not a valid ONNX model (truncated or corrupt" in found[("cut", "1")][1]
    assert "memory" not in found[("cut", "1")][1]
    assert "not a file inside the version's folder" in found[("far", "1")][1]
    assert "native_size 2048" in found[("big", "1")][1] and "max_resolution 256" in found[("big", "1")][1]
    assert "needs at least 7629 MB" in found[("bomb", "1")][1]
    assert "needs at least 7629 MB" in found[("bomb2", "1")][1]  # a Constant node's shape too
    assert "breaks the artifact contract" in found[("probs", "1")][1]
    assert models.used_bytes < 32 * 2**20  # only `good` is charged


def test_a_load_that_grows_past_its_reservation_is_stopped_with_a_memory_reason(
    tmp_path: Path, registry_for
) -> None:
    put(tmp_path, "good", 1)
    (tmp_path / "grow" / "1").mkdir(parents=True)
    # 300 MB filled at run time from a shape no scan follows (a Constant through an Identity).
    hostile_models.expanding(
        tmp_path / "grow" / "1" / "model.onnx", 75 * 2**20, from_initializer=False, hidden=True
    )
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        used = models.used_bytes
        failures = await models.load("grow")
        assert failures and "memory: " in failures[0] and "reserved" in failures[0]
        assert models.used_bytes == used
        assert models.versions_of("grow") == []
        await models.stop()

    asyncio.run(main())


# --- 5: removing the newest version rolls back -----------------------------------------------


def test_removing_the_newest_version_rolls_back_to_the_one_the_policy_now_selects(
    tmp_path: Path, registry_for
) -> None:
    put(tmp_path, "good", 1, seed=1)
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        put(tmp_path, "good", 2, seed=2)
        await models.poll()
        assert models.resolve("good").version == "2"
        shutil.rmtree(tmp_path / "good" / "2")
        await models.poll()
        assert models.resolve("good").version == "1"  # not "unloaded: no longer selected" for ever
        assert ("good", "2") not in states(models)  # the removed version leaves the index
        await models.poll()
        assert models.resolve("good").version == "1"
        await models.stop()

    asyncio.run(main())


# --- 6, 7: a cheap scan, config.json read only when it changes, no way out of the repository ----


def test_unrelated_folders_cost_one_stat_each_on_later_passes(tmp_path: Path, monkeypatch) -> None:
    put(tmp_path, "good", 1)
    for i in range(2000):  # a dataset left in the repository
        (tmp_path / f"class_{i}" / "img").mkdir(parents=True)
    scanner = layout.Scanner(tmp_path)
    first = scanner()
    assert list(first.models) == ["good"] and first.skipped == []  # not shown: not model-like
    listed: list[str] = []
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    started = time.perf_counter()
    again = scanner()
    elapsed = time.perf_counter() - started
    assert list(again.models) == ["good"]
    assert not any("class_" in p for p in listed), listed[:5]
    assert elapsed < 0.5


def test_config_json_is_read_again_only_when_it_changes(tmp_path: Path, monkeypatch) -> None:
    put(tmp_path, "good", 1)
    config = tmp_path / "good" / "config.json"
    config.write_text('{"precision": "fp32"}')
    parsed: list[bytes] = []
    real = config_file.parse_config
    monkeypatch.setattr(config_file, "parse_config", lambda raw, name: parsed.append(raw) or real(raw, name))
    scanner = layout.Scanner(tmp_path)
    for _ in range(5):
        assert scanner().models["good"].precision == "fp32"
    assert len(parsed) == 1
    config.write_text('{"precision": "int8"} ')
    assert scanner().models["good"].precision == "int8" and len(parsed) == 2


def test_a_bad_config_json_read_on_every_pass_holds_nothing_from_earlier_passes(tmp_path: Path) -> None:
    put(tmp_path, "good", 1)
    config = tmp_path / "good" / "config.json"
    config.write_text("[" * 60_000)
    cache = config_file.ConfigCache()
    for _ in range(50):
        with pytest.raises(config_file.ConfigError) as raised:
            cache.read(config, "good")
    frames, tb = 0, raised.value.__traceback__
    while tb is not None:
        frames, tb = frames + 1, tb.tb_next
    assert frames <= 2  # a fresh error each pass: its traceback does not chain every earlier pass


def test_symlinks_out_of_the_repository_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    put(root, "good", 1)
    outside = tmp_path / "outside"
    for name in ("1", "2", "secrets"):
        (outside / name).mkdir(parents=True)
    (tmp_path / "other.json").write_text('{"db_password": "x", "api_token": "y"}')
    (root / "etc").symlink_to(outside)
    (root / "good" / "config.json").symlink_to(tmp_path / "other.json")
    found = layout.scan(root)
    reasons = {(s.model, s.version): s.reason for s in found.skipped}
    assert reasons == {
        ("etc", None): layout.OUTSIDE,
        ("good", None): f"config.json: {layout.OUTSIDE}",
    }
    assert "db_password" not in str(reasons)


# --- 9: nothing accumulates; the right message; logs and bodies ------------------------------


def test_unloads_of_unknown_names_and_removed_versions_leave_nothing_behind(
    tmp_path: Path, registry_for
) -> None:
    put(tmp_path, "good", 1)
    put(tmp_path, "gone", 1)
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        for i in range(1000):
            with pytest.raises(ModelNotFound):
                await models.unload(f"nobody-{i}")
        await models.load("good")
        await models.unload("gone")
        shutil.rmtree(tmp_path / "gone")
        await models.poll()
        await models.stop()

    asyncio.run(main())
    assert models._locks == {} and models._lock_users == {}
    assert {e.name for e in models.index()} == {"good"}


def test_requests_after_an_unload_of_the_default_model_are_told_so(tmp_path: Path, registry_for) -> None:
    put(tmp_path, "good", 1)
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        served = models.resolve()
        with served.use():  # a request still running on it: the unload waits, it is UNLOADING
            unloading = asyncio.create_task(models.unload("good"))
            await asyncio.sleep(0.05)
            with pytest.raises(ModelUnloaded, match="was unloaded; POST /v2/repository/models/good/load"):
                models.resolve()
        await unloading
        with pytest.raises(ModelUnloaded) as raised:
            models.resolve()
        assert raised.value.retry_after is None  # nothing brings it back by itself: no retry loop
        await models.stop()

    asyncio.run(main())


def test_control_characters_in_folder_names_are_escaped_in_the_log(
    tmp_path: Path, registry_for, caplog: pytest.LogCaptureFixture
) -> None:
    put(tmp_path, "good", 1)
    forged = tmp_path / "x\nERROR forged line"
    (forged / "1").mkdir(parents=True)
    models = registry_for(tmp_path)

    async def main() -> None:
        await models.start()
        await models.stop()

    with caplog.at_level(logging.WARNING, logger="ninserve"):
        asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "x\\nERROR forged line" in text
    assert not any(line.startswith("ERROR forged") for line in text.splitlines())


def test_the_default_model_memory_holds_three_nins_and_the_swap_of_the_largest(
    tmp_path: Path, registry_for
) -> None:
    """The shipped artifacts, default memory settings: fp32 `alpha`, int8 `beta`, fp32 `gamma`,
    then `alpha/2` loading beside `alpha/1`. Each is charged what it measurably holds."""
    artifacts = Path(__file__).resolve().parents[3] / "model" / "artifacts"
    for name, source, target in (
        ("alpha", "nin-cifar10.onnx", "model.onnx"),
        ("beta", "nin-cifar10-int8.onnx", "model-int8.onnx"),
        ("gamma", "nin-cifar10.onnx", "model.onnx"),
    ):
        folder(tmp_path, name)
        shutil.copy(artifacts / source, tmp_path / name / "1" / target)
    models = registry_for(tmp_path, default="alpha", max_batch_wait_ms=0.0)
    assert models.plan.models == 96 * 2**20  # the default

    async def main() -> None:
        await models.start()
        assert [(s.name, s.precision) for s in models.loaded()] == [
            ("alpha", "fp32"),
            ("beta", "int8"),
            ("gamma", "fp32"),
        ]
        shutil.copy(artifacts / "nin-cifar10.onnx", folder(tmp_path, "alpha", 2) / "model.onnx")
        await models.poll()
        assert models.resolve("alpha").version == "2"
        for served in models.loaded():
            assert served.memory < 40 * 2**20, (served.name, served.memory)
        assert models.used_bytes <= models.plan.models
        await models.stop()

    asyncio.run(main())
    found = states(models)
    assert found[("alpha", "2")][0] == found[("beta", "1")][0] == found[("gamma", "1")][0] == "READY"


def test_a_load_that_looks_too_large_once_is_tried_again_before_it_fails(
    tmp_path: Path, registry_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RSS is the whole process's: a large decode running beside a load can make it look larger
    than it is. One such reading is not enough to refuse a version."""
    from app.repository import registry as registry_module

    put(tmp_path, "good", 1)
    models = registry_for(tmp_path)
    real, calls = registry_module.load_version, []

    async def noisy(*args, **kwargs):  # type: ignore[no-untyped-def]
        served = await real(*args, **kwargs)
        calls.append(served)
        if len(calls) == 1:
            served.held = 500 * 2**20  # what a decode of a large image beside it would look like
        return served

    monkeypatch.setattr(registry_module, "load_version", noisy)

    async def main() -> None:
        await models.start()
        assert models.resolve("good").version == "1" and len(calls) == 2
        assert models.used_bytes < 100 * 2**20
        await models.stop()

    asyncio.run(main())
