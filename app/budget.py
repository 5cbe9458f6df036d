"""The memory budget's split: how one process's RSS is shared between its parts (app/core/memory.py
has the costs of the work itself). Arithmetic on settings only, so app/config.py can refuse a budget
that cannot hold these settings before anything starts, without importing the core.

    plan = plan_memory(budget_mb=800, store_bytes=64 * MiB, max_resolution=256, ...)
    plan.run_pixels      # input pixels one ONNX Runtime run may hold
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Settings

MiB = 1024 * 1024
# 163 MB measured after start and warm-up with one fp32 NiN (2 ORT threads), ~63 MB of it the model
# and its arena: the process's own part is ~100 MB, of which the first session's start (~20 MB) is
# charged to the models (each load is charged the RSS it adds). Reserve and models (96 MB by default)
# add up to 192, as before the shared arena: decoding and rendering keep their shares.
RUNTIME_RESERVE = 96 * MiB
RUN_SHARE, DECODE_SHARE = 0.35, 0.45  # of what is left after reserve and store; rendering: the rest
SMALL_DECODE = 16 * MiB  # decodes up to this run in the shared pool: a 1080p photo costs ~12 MB
DEFAULT_STORE_SHARE = 0.08  # the memory store's default byte bound: 64 MB of an 800 MB budget
# With Redis, results wait here while Redis is slow or away (app/core/store_redis.py; oldest dropped
# beyond): ~2,000 results at resolution 32, ~15 s of a 2-core server's classifications.
STORE_WRITE_BACKLOG = 16 * MiB


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    budget: int  # bytes of RSS the process should stay within
    reserve: int
    models: int  # what loaded model versions may hold together (app/repository/registry.py)
    store: int
    run_pixels: int  # input pixels one ORT run may hold (batches are split to fit)
    run_bytes: int  # what the ORT runs may hold, all concurrent runs together
    small_decode: int  # largest decode run in the shared pool; larger ones take the decode gate
    large_decode: int  # bytes the one large decode in flight may hold
    render: int  # bytes the renders in flight may hold together

    def describe(self) -> str:
        parts = (
            ("reserve", self.reserve),
            ("models", self.models),
            ("store", self.store),
            ("ORT runs", self.run_bytes),
            ("large decodes", self.large_decode),
            ("render", self.render),
        )
        return ", ".join(f"{name} {value / MiB:.0f} MB" for name, value in parts)


def default_store_bytes(budget_mb: int) -> int:
    return int(budget_mb * MiB * DEFAULT_STORE_SHARE)


def plan_memory(
    *,
    budget_mb: int,
    store_bytes: int,
    max_resolution: int,
    native_size: int,
    max_batch_size: int,
    concurrent_batches: int,
    decode_threads: int,
    ort_bytes_per_pixel: int,
    run_pixels: int = 0,
    model_bytes: int = 96 * MiB,
) -> MemoryPlan:
    """Split the budget; raises ValueError when it cannot hold one image at `max_resolution`."""
    budget = budget_mb * MiB
    work = budget - RUNTIME_RESERVE - model_bytes - store_bytes
    min_pixels = max_resolution * max_resolution
    if work <= 0:
        need = math.ceil((budget - work) / MiB) + 256
        raise ValueError(
            f"memory_budget_mb={budget_mb} leaves nothing for work after the runtime "
            f"({RUNTIME_RESERVE // MiB} MB), the models ({model_bytes // MiB} MB) and the result store "
            f"({store_bytes // MiB} MB): set NINSERVE_MEMORY_BUDGET_MB={need}"
        )
    given = bool(run_pixels)
    if not given:
        run_pixels = int(work * RUN_SHARE) // (ort_bytes_per_pixel * concurrent_batches)
        # No more than the largest batch of native-size images needs: the rest goes to decoding;
        # no less than one image at max_resolution: a larger share elsewhere (models, store)
        # takes it from decoding and rendering instead of failing the start.
        run_pixels = min(run_pixels, max(max_batch_size * native_size * native_size, min_pixels))
        run_pixels = max(run_pixels, min_pixels)
    if run_pixels < min_pixels:
        raise ValueError(
            f"max_run_pixels {run_pixels} is fewer than one image at max_resolution "
            f"{max_resolution} ({min_pixels}): set NINSERVE_MAX_RUN_PIXELS={min_pixels} or unset it"
        )
    run_bytes = run_pixels * ort_bytes_per_pixel * concurrent_batches
    rest = work - run_bytes
    decode = int(rest * DECODE_SHARE / (1 - RUN_SHARE))
    small_total = SMALL_DECODE * decode_threads
    if rest <= 0 or decode <= small_total:
        # The one number to set: the budget that leaves decoding its shared pool and a large decode.
        least_rest = math.ceil((small_total + SMALL_DECODE) * (1 - RUN_SHARE) / DECODE_SHARE)
        need = math.ceil((budget - work + run_bytes + least_rest) / MiB)
        raise ValueError(
            f"memory_budget_mb={budget_mb} is too small for these settings: set "
            f"NINSERVE_MEMORY_BUDGET_MB={need} (runtime {RUNTIME_RESERVE // MiB} MB, models "
            f"{model_bytes // MiB} MB, store {store_bytes // MiB} MB, ORT runs {run_bytes // MiB} MB, "
            "and room for decoding)"
        )
    return MemoryPlan(
        budget=budget,
        reserve=RUNTIME_RESERVE,
        models=model_bytes,
        store=store_bytes,
        run_pixels=run_pixels,
        run_bytes=run_bytes,
        small_decode=SMALL_DECODE,
        large_decode=decode - small_total,
        render=rest - decode,
    )


def plan_for(settings: Settings, native_size: int = 32) -> MemoryPlan:
    """The plan for these settings (the native size comes from the model; 32 until it loads)."""
    return plan_memory(
        budget_mb=settings.memory_budget_mb,
        store_bytes=settings.store_max_bytes if settings.result_store == "memory" else STORE_WRITE_BACKLOG,
        max_resolution=settings.max_resolution,
        native_size=native_size,
        max_batch_size=settings.max_batch_size,
        concurrent_batches=settings.concurrent_batches,
        decode_threads=settings.decode_threads,
        ort_bytes_per_pixel=settings.ort_bytes_per_pixel,
        run_pixels=settings.max_run_pixels,
        model_bytes=settings.model_memory_mb * MiB,
    )
