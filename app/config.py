"""Server settings: one `Settings` object, read from `NINSERVE_*` environment variables (and CLI
flags, which win), validated once at start so a bad value stops the server before it binds.

    NINSERVE_DEVICE=cpu NINSERVE_MAX_BATCH_SIZE=64 ninserve serve --port 8080

Settings are built in `create_app(settings)` or the CLI, never at import, so tests pass their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.budget import default_store_bytes, plan_for
from app.layout_rules import name_problem, repository_problem

# The artifact the model side exports; relative to the repository / installed package root.
ARTIFACTS = Path(__file__).resolve().parent.parent / "model" / "artifacts"
DEFAULT_MODEL_PATH = ARTIFACTS / "nin-cifar10.onnx"
# Same contract, statically quantized (QDQ int8, `ninserve quantize`): faster on CPUs with VNNI.
INT8_MODEL_PATH = ARTIFACTS / "nin-cifar10-int8.onnx"

MiB = 1024 * 1024


class Settings(BaseSettings):
    # hide_input_in_errors: a model-level check's error would otherwise quote every input,
    # API keys included (pydantic's `input_value`); settings_error() below says what to change.
    model_config = SettingsConfigDict(
        env_prefix="NINSERVE_",
        extra="forbid",
        frozen=True,
        protected_namespaces=(),
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    # --- process ---
    host: str = "127.0.0.1"  # loopback by default: exposing the API is an explicit decision
    port: int = Field(8000, ge=0, le=65535)  # 0 picks a free port (tests)
    workers: int = Field(1, ge=1)  # uvicorn processes; each loads its own model and memory store
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # json: one JSON object a line with the request id (app/logs.py), for log collectors.
    log_format: Literal["text", "json"] = "text"
    # FastAPI's native OpenTelemetry (traces, metrics, logs to the globally configured providers).
    # Off unless asked for: /metrics is the Prometheus view, and while on, FastAPI looks up the
    # providers on every request (~2 % of the event loop's time in bench/profile.py).
    opentelemetry: bool = False

    # --- models (app/repository/, docs/repository.md) ---
    # DIR/<model>/<version>/model.onnx, Triton's layout. Unset: the bundled artifacts, or model_path.
    model_repository: Path | None = None
    model_path: Path | None = None  # one ONNX file served as a one-model repository
    # The default model (/v1/classify); with one model (the bundled one, model_path) its name too,
    # e.g. a KServe InferenceService's name. Unset: nin-cifar10, the file's stem, or the
    # repository's first model by name.
    model_name: str | None = None
    # auto: int8 on the CPU (0.08 pt below fp32 and faster through the server, docs/repository.md),
    # fp32 on CUDA; used where a version has both variants and its config.json pins none.
    precision: Literal["auto", "fp32", "int8"] = "auto"
    # Rescan the repository this often and load, reload or unload what changed; 0: never (load
    # and unload through POST /v2/repository/models/{name}/load and /unload).
    repository_poll_s: float = Field(0.0, ge=0, le=86_400)
    # Part of memory_budget_mb held for loaded model versions. Each is priced from its file
    # before it loads (file + external data, x3, + 4 MB: fp32 NiN ~15 MB, int8 ~7 MB, with the
    # shared ORT arena) and then charged what its load and warm-up measurably took; a load that
    # would not fit is refused. 96 MB holds the bundled model, two more fp32 NiNs and a new fp32
    # version loading beside the largest (a hot swap), with room to spare.
    model_memory_mb: int = Field(96, ge=8)
    # A version's warm-up (batch 1 and max_batch_size; every size on CUDA) running longer than
    # this is stopped (ONNX Runtime terminates the run): the version fails to load, with this as
    # its reason, and its memory charge is returned.
    model_warmup_timeout_s: float = Field(60.0, gt=0, le=3600)

    # --- ONNX Runtime ---
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA EP when the runtime has it
    cuda_device_id: int = Field(0, ge=0)
    intra_op_threads: int = Field(0, ge=0)  # 0: ONNX Runtime's default (one per physical core)

    # --- dynamic batching ---
    max_batch_size: int = Field(32, ge=1, le=1024)  # images per ORT run
    # How long the oldest request waits for company. 0: batches still grow under load, because
    # arrivals accumulate while the previous batch runs; on CPU a deliberate wait only adds latency
    # (docs/benchmarks.md: c=1 551 vs 226 req/s, c=8 672 vs 580 req/s for 0 vs 2 ms).
    max_batch_wait_ms: float = Field(0.0, ge=0, le=1000)
    max_queue: int = Field(256, ge=1)  # images in progress beyond the batches in flight; then 503
    concurrent_batches: int = Field(1, ge=1, le=16)  # batches in flight; >1 overlaps copies on GPU
    request_timeout_s: float = Field(10.0, gt=0)  # from arrival; checked before decode, queue, run (503)
    decode_threads: int = Field(2, ge=1, le=64)  # thread pool for image decoding and V2 request parsing

    # --- request limits ---
    max_body_bytes: int = Field(16 * MiB, ge=1024)  # whole request body, any endpoint (413)
    # Bytes of request bodies held at once, all requests together (503 beyond): bodies arrive
    # before admission control can price them, and max_connections x max_body_bytes would be
    # 16 GB. 128 MiB fits in the headroom a 1 GiB container keeps above memory_budget_mb.
    max_body_bytes_in_flight: int = Field(128 * MiB, ge=1024)
    # width*height, checked from the header before decoding (413); Pillow refuses > 2 x 89.5M itself
    max_image_pixels: int = Field(40_000_000, ge=1, le=178_956_970)
    # files in one /v1/classify/batch request (413)
    # NINSERVE_MAX_BATCH_FILES, the old name (before NINSERVE_MAX_REQUEST_IMAGES), is still read: deprecated.
    max_request_images: int = Field(
        32,
        ge=1,
        le=1024,
        validation_alias=AliasChoices(
            "max_request_images", "NINSERVE_MAX_REQUEST_IMAGES", "NINSERVE_MAX_BATCH_FILES"
        ),
    )
    max_resolution: int = Field(256, ge=32, le=2048)  # largest `resolution` a client may ask for

    # --- result store ---
    result_store: str = "memory"  # memory | redis://host:port/db (app/core/store_redis.py)
    store_max_items: int = Field(2048, ge=1)  # memory store: LRU bound by count ...
    # ... and by bytes (JSON + maps + preview). Unset with the memory store: 8 % of memory_budget_mb
    # (_store_bytes_from_budget below); 256 MiB bounds the Redis store, all replicas together.
    store_max_bytes: int = Field(256 * MiB, ge=1024)
    store_ttl_s: float = Field(3600.0, gt=0)  # a result older than this is gone (404)
    # Long side of the stored preview of the input (its own aspect ratio) under map overlays: 512,
    # the largest overlay the page and the grid's cells ask for, is sharp; larger overlays are
    # upsampled from it. A photo's preview is its upload or a ~40 KB JPEG (app/core/decode.py).
    preview_size: int = Field(512, ge=32, le=2048)

    # --- overlay previews ---
    # An upload of at most this many bytes (a JPEG up to 4 x preview_size on a side, with its
    # metadata segments cut out; another format up to 2 x preview_size, without metadata) is kept
    # as the overlay backdrop: no decode work per request, decoded only when a map is drawn.
    # Larger ones are reduced to a JPEG preview (~2-3x a 640x480 JPEG's decode time).
    # 256 KiB covers web-sized photos; the store's byte budget bounds the total. 0: always reduce.
    preview_keep_bytes: int = Field(256 * 1024, ge=0, le=16 * MiB)

    # --- connections and HTTP parsing (app/http/server.py; docs/security.md) ---
    # A client gets this long from its first byte (or from connecting) to the end of the request
    # headers. One packet carries a real client's headers; 10 s covers slow mobile round trips,
    # while a slowloris client trickling one header line every 2 s is cut off (Go's
    # ReadHeaderTimeout practice; uvicorn itself has no such timeout).
    header_timeout_s: float = Field(10.0, gt=0, le=600)
    # From the end of the headers to the end of the body. Uploads here are images, usually far
    # below 1 MB; 30 s still takes a full max_body_bytes (16 MiB) at ~4.5 Mbit/s.
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    # Idle time between requests on a kept-alive connection (uvicorn's default). Behind a proxy
    # that reuses connections, set it above the proxy's own idle timeout.
    keep_alive_timeout_s: float = Field(5.0, gt=0, le=600)
    # Open connections per process; beyond it a new connection closes the oldest idle one (between
    # requests, or silent since it connected), or when none is idle gets 503 and is closed at once.
    # Each idle connection costs ~10 KB, but each one can also hold a request body being read:
    # 1000 covers the 512-client load tests with room, under the usual 1024 file-descriptor limit.
    max_connections: int = Field(1000, ge=1)
    # Request line + headers, in bytes (431 beyond). 16 KiB, as h11 and IIS: long bearer tokens
    # fit; httptools has no limit of its own, so unbounded headers would otherwise be buffered.
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    max_headers: int = Field(100, ge=8, le=10_000)  # header lines (431 beyond); Apache's LimitRequestFields
    # SIGTERM: requests in flight get this long to finish; those still running then get 503 with
    # Retry-After (app/http/middleware/shutdown.py). Kubernetes waits 30 s before SIGKILL by default.
    graceful_shutdown_s: float = Field(10.0, ge=0, le=3600)

    # --- gRPC (app/grpc/, docs/api.md#grpc) ---
    # The Open Inference Protocol over gRPC, in the same process on its own port (Triton and
    # KServe use 8001). Unset: no gRPC listener. Off by default because a second listener is a
    # second surface to expose and secure, and `ninserve serve` opens only what was asked for;
    # the container image, compose file and Kubernetes manifests set it to 8001. 0 picks a free
    # port (tests). Same host, limits, API keys, deadlines and budget as HTTP.
    grpc_port: int | None = Field(None, ge=0, le=65535)
    # Calls in progress at once (queued or running); beyond it RESOURCE_EXHAUSTED before any
    # handler runs. Calls past it still had their message read by gRPC's core: the bound
    # on those bytes is set by the connections and streams below.
    grpc_max_concurrent_rpcs: int = Field(64, ge=1, le=100_000)
    # gRPC's core reads every open stream's message before any handler runs (and before the call
    # limit above applies), so what it may hold at once is connections x streams x one message,
    # and a call holds its message twice while converting it (the parsed protobuf, and the raw
    # contents taken from it). A connection carries grpc_max_streams_per_connection calls at once
    # and may open twice as many streams (gRPC counts a stream until its call is torn down, so
    # without that room calls below the limit were refused: app/grpc/server.py STREAM_SLACK).
    # One message may then be at most max_body_bytes_in_flight / (2 x connections x 2 x calls)
    # (128 MiB / (2 x 16 x 16) = 256 KiB: one raw 256x256 image, or any encoded image a CIFAR
    # model is sent; measured in docs/api.md). A connection past the limit is closed at once
    # (clients see UNAVAILABLE and reconnect). A client keeps one connection per channel and at
    # most grpc_max_streams_per_connection calls in flight on it; raise these where more clients
    # or calls come at once, and messages get smaller.
    grpc_max_connections: int = Field(16, ge=1, le=10_000)
    grpc_max_streams_per_connection: int = Field(8, ge=1, le=1000)
    # A connection is asked to close (GOAWAY) after this long, and its calls get body_timeout_s to
    # finish: a client trickling a message cannot hold a call for longer. Clients reconnect.
    grpc_max_connection_age_s: float = Field(300.0, gt=0, le=86_400)

    # --- access control and response headers (app/http/middleware/auth.py,
    # app/http/middleware/security_headers.py) ---
    # Bearer API keys, comma-separated; empty: no key needed (the server binds to loopback by
    # default). SecretStr keeps them out of reprs and logs.
    api_keys: SecretStr = SecretStr("")
    api_keys_file: Path | None = None  # one key per line (e.g. a mounted Kubernetes Secret); adds to api_keys
    # /metrics shows traffic, error and queue figures an attacker could watch an attack with;
    # Prometheus can send a bearer token (`authorization:` in the scrape config).
    metrics_require_key: bool = True
    # /docs, /redoc and /openapi.json describe only what docs/api.md describes publicly.
    docs_require_key: bool = False
    # Origins allowed to call the API from a browser ("*" or comma-separated); empty: no CORS headers.
    cors_origins: str = ""
    # Server-Timing (decode/queue/infer durations) helps in browser dev tools but tells anyone how
    # busy the server is. None: sent only when bound to loopback (a development server).
    server_timing: bool | None = None

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_exists(cls, path: Path | None) -> Path | None:
        # Key format is checked in app/http/middleware/auth.py: an error raised here would quote the keys.
        if path is not None and not path.is_file():
            raise ValueError(f"api_keys_file not found: {path}")
        return path

    # --- memory budget and admission (app/core/memory.py, app/core/admission.py, docs/reliability.md) ---
    # RSS the process should stay within. The shipped compose file and Kubernetes manifests allow
    # 1 GiB: 800 MB leaves ~220 MB for allocator fragmentation and what the plan does not model.
    # Split between runtime, result store, ORT runs, decoding and rendering; checked at start.
    memory_budget_mb: int = Field(800, ge=256)
    # Input pixels one ONNX Runtime run may hold (batches are split to fit). 0: from the budget,
    # at least one image at max_resolution (65,536 pixels, ~128 MB of ORT memory at 256).
    max_run_pixels: int = Field(0, ge=0)
    # Peak bytes ORT holds per input pixel: 1.5-1.8 KB measured for the fp32 NiN, 1.3 KB for int8.
    ort_bytes_per_pixel: int = Field(2048, ge=1)
    # shared: one CPU arena in ORT's environment for every loaded version (a version then holds
    # its weights, ~8-13 MB for the fp32 NiN, not an arena of its own: 54 MB; docs/repository.md),
    # handed back after runs larger than a batch of native-size images as with `shrink`.
    # shrink: the same with one arena per session; off: no arena at all (costs every run);
    # keep: ORT's default, one arena per session that keeps the largest run's peak for good.
    ort_arena: Literal["shared", "shrink", "off", "keep"] = "shared"
    # Large decodes (priced above 16 MB from the header) run one at a time on their own thread;
    # this many may wait for it before the next is refused with 503 (each takes ~0.3 s).
    decode_queue: int = Field(4, ge=0)
    # Heatmap PNGs render on their own threads so they cannot starve classification's decodes;
    # this many wait beyond those threads before a render is refused with 503. Waiting holds no
    # memory; 16 lets one page view (11 maps of ~7 ms each) and a second client through at once.
    render_threads: int = Field(1, ge=1, le=16)
    render_queue: int = Field(16, ge=0)
    # Refusals (503) answered at once per second; beyond that each is held shed_hold_s (the
    # Retry-After) first, so clients that retry at once cannot make answering 503s the server's
    # main work (512 such clients: 32x32 goodput 119 instead of 374 req/s). 0 s: never held.
    shed_rate: float = Field(50.0, gt=0)
    shed_hold_s: float = Field(1.0, ge=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _store_bytes_from_budget(cls, data: object) -> object:
        """The memory store's byte bound follows the memory budget unless set: 8 % (64 MB of 800)."""
        if not isinstance(data, dict) or "store_max_bytes" in data:
            return data
        if str(data.get("result_store", "memory")) != "memory":
            return data
        budget = int(data.get("memory_budget_mb", 800))
        return {**data, "store_max_bytes": default_store_bytes(budget)}

    @model_validator(mode="after")
    def _fits_memory_budget(self) -> Settings:
        plan_for(self)  # raises ValueError with what to change
        return self

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"model file not found: {path} (export one or set NINSERVE_MODEL_PATH)")
        return path

    @field_validator("model_repository")
    @classmethod
    def _repository_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_dir():
            raise ValueError(f"model repository not found: {path} (a folder of <model>/<version>/model.onnx)")
        return path

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, name: str | None) -> str | None:
        if name is not None and (problem := name_problem(name)) is not None:
            raise ValueError(f"model_name {name[:80]!r}: {problem}")
        return name

    @field_validator("result_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("result_store must be 'memory' or a redis:// / rediss:// / unix:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_resolution % 4:
            raise ValueError("max_resolution must be a multiple of 4 (the net downsamples by 4)")
        if self.max_batch_size > self.max_queue:
            raise ValueError("max_queue must be at least max_batch_size, or batches can never fill")
        if self.model_path is not None and self.model_repository is not None:
            raise ValueError("set model_repository or model_path, not both")
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError("grpc_port must differ from port (HTTP and gRPC listen side by side)")
        if self.model_repository is not None and (problem := repository_problem(self.model_repository)):
            raise ValueError(problem)  # before the server starts, not after its banner
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError("max_body_bytes_in_flight must hold at least one body of max_body_bytes")
        return self

    @property
    def max_batch_wait_s(self) -> float:
        return self.max_batch_wait_ms / 1000.0

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """Every accepted key: NINSERVE_API_KEYS plus the lines of NINSERVE_API_KEYS_FILE."""
        keys = self.api_keys.get_secret_value().split(",")
        if self.api_keys_file is not None:
            keys += self.api_keys_file.read_text().splitlines()
        return tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    @property
    def send_server_timing(self) -> bool:
        if self.server_timing is not None:
            return self.server_timing
        return self.host in ("127.0.0.1", "localhost", "::1")


def settings_error(exc: ValueError) -> str:
    """One line that says which setting is wrong and why, never its value: pydantic's own text is
    several lines per error (with a docs link), and values may be secrets."""
    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split())
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return " ".join("; ".join(problems).split())
