"""`inference.GRPCInferenceService`: the Open Inference Protocol's calls over gRPC, each a thin
adapter over what the HTTP V2 routes call (app/http/routes/v2.py, repository.py): the same
registry lookups, metadata, `infer` (app/http/v2/infer.py -> pipeline.run_images: admission,
decode, batcher, deadlines) and repository operations. Errors become status codes in
app/grpc/status.py; every call is counted in the app's metrics with protocol="grpc".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from app.core.echo import ECHO_LIMIT, shown
from app.core.engine import INPUT_NAME
from app.core.errors import (
    InvalidParameter,
    InvalidTensor,
    ModelLoadFailed,
    ModelNotFound,
    NinServeError,
    NotReady,
    PayloadTooLarge,
)
from app.core.served import Served
from app.grpc import status
from app.grpc.proto import inference_pb2 as pb
from app.grpc.tensors import TYPED_BYTES_PER_ELEMENT, infer_request, infer_response, typed_elements
from app.http.metrics import NO_MODEL, Metrics
from app.http.v2.codec import InferRequest
from app.http.v2.infer import infer, model_config, model_metadata
from app.serving.state import ServingState

logger = logging.getLogger("ninserve")

SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ("classification", "model_configuration", "model_repository")
LARGE_MESSAGE = 32 * 1024  # bytes: messages this large (or priced above small_decode) convert off the loop


@dataclass(slots=True)
class Note:
    """What a call learnt for its metrics: the model version it ran on and its error slug."""

    model: tuple[str, str] = NO_MODEL
    reason: str | None = None


Handler = Callable[[Any, Any, grpc.aio.ServicerContext, Note], Awaitable[Any]]
Call = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]
CALLS: dict[str, tuple[type[Message], type[Message]]] = {}  # name -> (request, reply), by @_rpc


def _rpc(request_type: type[Message], reply_type: type[Message]) -> Callable[[Handler], Call]:
    """A call: a malformed message (MALFORMED from `deserializer`) is the client's INVALID_ARGUMENT,
    domain errors -> their status code, anything
    else INTERNAL (logged), counted in the metrics."""

    def wrap(handler: Handler) -> Call:
        method = f"/{SERVICE}/{handler.__name__}"
        CALLS[handler.__name__] = (request_type, reply_type)

        async def call(self: Service, request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, note, code = time.perf_counter(), Note(), grpc.StatusCode.OK
            try:
                return await handler(self, _parsed(request_type, request), context, note)
            except NinServeError as exc:
                code, note.reason = status.status_for(exc), exc.slug
                if code == grpc.StatusCode.INTERNAL and exc.retry_after is None:
                    logger.error("%s: %s", method, exc.detail)
                context.set_trailing_metadata(status.retry_metadata(exc.retry_after))
                await context.abort(code, status.message(exc.detail))
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:  # the client went away, or the shutdown grace ended
                code, note.reason = grpc.StatusCode.CANCELLED, "cancelled"
                raise
            except Exception:
                code, note.reason = grpc.StatusCode.INTERNAL, "internal-error"
                logger.exception("unhandled error in %s", method)
                await context.abort(code, "internal server error")
            finally:
                seconds = time.perf_counter() - started
                self.metrics.observe_grpc(method, code.name, note.reason, seconds, note.model)

        call.__name__ = handler.__name__
        return call

    return wrap


class Malformed:
    """What the deserializer hands a call whose message is not valid protobuf: the call answers
    INVALID_ARGUMENT, where an exception in gRPC's own deserializer would answer INTERNAL."""


MALFORMED = Malformed()


def deserializer(request_type: type[Message]) -> Callable[[bytes], Any]:
    """Parsed by gRPC as it receives the message, so that its bytes are freed before the handler
    runs: a call holds its message once, not twice (docs/api.md#grpc prices messages so)."""

    def parse(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except DecodeError:
            return MALFORMED

    return parse


def _parsed(request_type: type[Message], request: Any) -> Any:
    if request is MALFORMED:
        raise InvalidTensor(f"the {request_type.__name__} message is not valid protobuf")
    return request


def _named(value: str) -> str:
    """A name or version short enough to quote in NOT_FOUND; longer ones never name a served model."""
    if len(value) > ECHO_LIMIT:
        raise ModelNotFound(f"unknown model or version {shown(value)}")
    return value


class Service:
    def __init__(self, serving: ServingState, metrics: Metrics, version: str) -> None:
        self.serving, self.metrics, self.version = serving, metrics, version

    def _resolve(self, name: str, version: str) -> Served:
        """The version a call names (empty: the highest loaded), as HTTP's path lookup."""
        if not name:
            raise ModelNotFound("a model name is required")
        return self.serving.models.resolve(_named(name), _named(version) if version else None)

    @_rpc(pb.ServerLiveRequest, pb.ServerLiveResponse)
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any, note: Note
    ) -> pb.ServerLiveResponse:
        if self.serving.state == "failed":  # a model that cannot load will not recover: restart the process
            raise NotReady("the model failed to load; the server log says why")
        return pb.ServerLiveResponse(live=True)

    @_rpc(pb.ServerReadyRequest, pb.ServerReadyResponse)
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any, note: Note
    ) -> pb.ServerReadyResponse:
        # Triton answers ready=false rather than an error; clients poll the flag.
        return pb.ServerReadyResponse(ready=self.serving.state == "ready")

    @_rpc(pb.ModelReadyRequest, pb.ModelReadyResponse)
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any, note: Note
    ) -> pb.ModelReadyResponse:
        try:
            served = self._resolve(request.name, request.version)
        except NotReady:
            return pb.ModelReadyResponse(ready=False)
        note.model = (served.name, served.version)
        return pb.ModelReadyResponse(ready=True)

    @_rpc(pb.ServerMetadataRequest, pb.ServerMetadataResponse)
    async def ServerMetadata(self, request: Any, context: Any, note: Note) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="ninserve", version=self.version, extensions=EXTENSIONS)

    @_rpc(pb.ModelMetadataRequest, pb.ModelMetadataResponse)
    async def ModelMetadata(self, request: Any, context: Any, note: Note) -> pb.ModelMetadataResponse:
        served = self._resolve(request.name, request.version)
        note.model = (served.name, served.version)
        meta = model_metadata(served, self.serving.models.versions_of(served.name))
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensors(**t) for t in meta["inputs"]],
            outputs=[tensors(**t) for t in meta["outputs"]],
        )

    @_rpc(pb.ModelConfigRequest, pb.ModelConfigResponse)
    async def ModelConfig(self, request: Any, context: Any, note: Note) -> pb.ModelConfigResponse:
        served = self._resolve(request.name, request.version)
        note.model = (served.name, served.version)
        config = model_config(served.engine, self.serving.settings)
        message = pb.ModelConfig(
            name=config["name"],
            platform=config["platform"],
            backend=config["backend"],
            max_batch_size=config["max_batch_size"],
            dynamic_batching=pb.ModelDynamicBatching(**config["dynamic_batching"]),
        )
        for t in config["input"]:
            message.input.add(name=t["name"], data_type=pb.DataType.Value(t["data_type"]), dims=t["dims"])
        for t in config["output"]:
            message.output.add(name=t["name"], data_type=pb.DataType.Value(t["data_type"]), dims=t["dims"])
        for group in config["instance_group"]:
            message.instance_group.add(
                count=group["count"], kind=pb.ModelInstanceGroup.Kind.Value(group["kind"])
            )
        for key, value in config["parameters"].items():
            message.parameters[key].string_value = value["string_value"]
        return pb.ModelConfigResponse(config=message)

    @_rpc(pb.ModelInferRequest, pb.ModelInferResponse)
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any, note: Note
    ) -> pb.ModelInferResponse:
        state = self.serving
        # The earlier of the server's request_timeout_s and the client's own deadline.
        timeout = state.settings.request_timeout_s
        remaining = context.time_remaining()
        deadline = time.monotonic() + (timeout if remaining is None else min(timeout, remaining))
        served = self._resolve(request.model_name, request.model_version)  # NOT_FOUND before any work
        note.model = (served.name, served.version)
        parsed = await self._parse(request, request.ByteSize(), deadline)
        # Looked up again once parsed: the version swapped in meanwhile is the one to hold.
        with state.models.resolve(served.name, request.model_version or None).use() as held:
            note.model = (held.name, held.version)
            outputs = await infer(state, parsed, held, deadline=deadline)
        return infer_response(held.info.name, held.info.version, parsed.id, outputs)

    async def _parse(self, request: pb.ModelInferRequest, size: int, deadline: float) -> InferRequest:
        """Converted like HTTP parses a body: priced first (typed contents widen into arrays), 413's
        RESOURCE_EXHAUSTED for what one parse can never hold, large ones off the event loop."""
        admission = self.serving.admission
        cost = size + typed_elements(request) * TYPED_BYTES_PER_ELEMENT
        if cost > admission.most_one_decode:
            raise PayloadTooLarge(
                f"converting this request's tensors needs about {cost >> 20} MB, more than the "
                f"{admission.most_one_decode >> 20} MB the memory budget gives one parse: send the "
                "tensors in raw_input_contents"
            )
        if size > LARGE_MESSAGE or cost > admission.plan.small_decode:
            return await admission.run_priced(cost, deadline, infer_request, request, (INPUT_NAME,))
        return infer_request(request, (INPUT_NAME,))

    @_rpc(pb.RepositoryIndexRequest, pb.RepositoryIndexResponse)
    async def RepositoryIndex(self, request: Any, context: Any, note: Note) -> pb.RepositoryIndexResponse:
        entries = [
            e for e in self.serving.models.index() if e.name and (not request.ready or e.state == "READY")
        ]
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version or "", state=e.state, reason=e.reason) for e in entries
            ]
        )

    @_rpc(pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse)
    async def RepositoryModelLoad(
        self, request: Any, context: Any, note: Note
    ) -> pb.RepositoryModelLoadResponse:
        _repository_only(request)
        name = request.model_name
        failures = await self.serving.models.load(name)
        if failures:
            serving = self.serving.models.versions_of(name)
            still = f"; serving {', '.join(serving)}" if serving else "; nothing of it serves"
            raise ModelLoadFailed(f"failed to load {shown(name)}: {'; '.join(failures)}{still}")
        return pb.RepositoryModelLoadResponse()

    @_rpc(pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse)
    async def RepositoryModelUnload(
        self, request: Any, context: Any, note: Note
    ) -> pb.RepositoryModelUnloadResponse:
        _repository_only(request)
        await self.serving.models.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _repository_only(request: Any) -> None:
    """Models load from the repository's folders only: a config or files sent with the call (Triton's
    override parameters) are refused, not ignored; `unload_dependents` has nothing to act on."""
    if request.repository_name:
        raise ModelNotFound(f"unknown repository {shown(request.repository_name)}; there is one, named ''")
    sent = sorted(set(request.parameters) - {"unload_dependents"})
    if sent:
        raise InvalidParameter(
            f"parameters {', '.join(map(shown, sent[:4]))} are not taken: models load from the repository"
        )


def handlers(service: Service) -> grpc.GenericRpcHandler:
    """The service's calls for grpc.aio: requests parsed by `deserializer` (malformed ones reach the
    call as MALFORMED), replies serialised by protobuf."""
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=deserializer(request),
            response_serializer=reply.SerializeToString,
        )
        for name, (request, reply) in CALLS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)
