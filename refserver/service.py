"""The gRPC handlers: Predict, GetModelMetadata, GetModelStatus.

Every failure a request can cause becomes a gRPC status with a message that
names what the model expects; no request ends the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import grpc
import numpy as np

from servelab.refserver.metrics import ServerMetrics
from servelab.refserver.models import ModelRegistry, ServedModel, ServingError, State
from servelab.refserver.runtime import InferenceError, TensorSpec
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import (
    TensorError,
    data_type,
    dtype_name,
    fill_tensor_proto,
    shape_proto,
    to_ndarray,
)

log = logging.getLogger("refserver")

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _spec_version(spec: pb.ModelSpec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


def _check_signature(model: ServedModel, spec: pb.ModelSpec) -> None:
    if spec.signature_name not in ("", SIGNATURE):
        raise ServingError(
            _INVALID,
            f"signature '{spec.signature_name}' not found; model '{model.name}' has '{SIGNATURE}'",
        )


def decode_inputs(model: ServedModel, request: pb.PredictRequest) -> dict[str, np.ndarray]:
    """The request's inputs as arrays, checked against the model's inputs."""
    runtime = model.runtime
    assert runtime is not None
    expected = [spec.name for spec in runtime.inputs]
    arrays: dict[str, np.ndarray] = {}
    for name, proto in request.inputs.items():
        spec = model.input_spec(name)
        if spec is None:
            raise ServingError(
                _INVALID, f"input '{name}' unknown; model '{model.name}' expects {_names(expected)}"
            )
        if proto.dtype != data_type(spec.dtype):
            raise ServingError(
                _INVALID,
                f"input '{name}' has dtype {dtype_name(proto.dtype)}; "
                f"model expects {dtype_name(data_type(spec.dtype))}",
            )
        try:
            array = to_ndarray(proto)
        except TensorError as exc:
            raise ServingError(_INVALID, f"input '{name}': {exc}") from None
        if not spec.accepts(array.shape):
            raise ServingError(
                _INVALID,
                f"input '{name}' has shape {_shape_text(array.shape)}; "
                f"model expects {_shape_text(spec.shape)}",
            )
        if array.ndim and array.shape[0] == 0:
            raise ServingError(_INVALID, f"input '{name}' has an empty batch (dimension 0 is 0)")
        arrays[name] = array
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise ServingError(
            _INVALID,
            f"input(s) {_names(missing)} missing; model '{model.name}' expects {_names(expected)}",
        )
    batches = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batches) > 1:
        raise ServingError(_INVALID, f"inputs disagree on the batch size: {sorted(batches)}")
    return arrays


def _output_names(model: ServedModel, output_filter: Sequence[str]) -> list[str]:
    assert model.runtime is not None
    known = [spec.name for spec in model.runtime.outputs]
    if not output_filter:
        return known
    for name in output_filter:
        if name not in known:
            raise ServingError(
                _INVALID,
                f"output_filter names output '{name}'; model '{model.name}' "
                f"has outputs {_names(known)}",
            )
    return list(dict.fromkeys(output_filter))


def _tensor_info(spec: TensorSpec) -> pb.TensorInfo:
    return pb.TensorInfo(
        name=spec.tensor_name, dtype=data_type(spec.dtype), tensor_shape=shape_proto(spec.shape)
    )


class Servicer:
    """The three methods, bound to a registry and the server's metrics."""

    def __init__(self, registry: ModelRegistry, metrics: ServerMetrics) -> None:
        self.registry = registry
        self.metrics = metrics

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        return (
            api.prediction_service_handler(self.predict, self.get_model_metadata),
            api.model_service_handler(self.get_model_status),
        )

    def _answer(self, method: str, spec: pb.ModelSpec, context: grpc.ServicerContext, call):
        """Run `call`; turn a ServingError (or a bug) into a counted gRPC status."""
        try:
            return call()
        except ServingError as exc:
            error = exc
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("%s for model '%s' failed unexpectedly", method, spec.name)
            error = ServingError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        version = _spec_version(spec)
        if version is None:
            served = self.registry.get(spec.name)
            version = served.version if served is not None else None
        self.metrics.failed(
            spec.name, "" if version is None else str(version), method, error.code.name
        )
        context.abort(error.code, error.message)

    def predict(
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        return self._answer("Predict", request.model_spec, context, lambda: self._predict(request))

    def get_model_metadata(
        self, request: pb.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.GetModelMetadataResponse:
        return self._answer(
            "GetModelMetadata", request.model_spec, context, lambda: self._metadata(request)
        )

    def get_model_status(
        self, request: pb.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetModelStatusResponse:
        return self._answer(
            "GetModelStatus", request.model_spec, context, lambda: self._status(request)
        )

    def _predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        started = time.perf_counter()
        spec = request.model_spec
        model = self.registry.find_available(spec.name, _spec_version(spec), spec.version_label)
        _check_signature(model, spec)
        inputs = decode_inputs(model, request)
        names = _output_names(model, request.output_filter)
        if log.isEnabledFor(logging.DEBUG):
            shapes = {name: list(array.shape) for name, array in inputs.items()}
            log.debug("Predict %s version %d: inferring %s", model.name, model.version, shapes)
        try:
            inference = model.runtime.infer(inputs)
        except InferenceError as exc:
            log.error("model '%s' version %d: %s", model.name, model.version, exc)
            raise ServingError(grpc.StatusCode.INTERNAL, str(exc)) from None
        response = pb.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = SIGNATURE
        for name in names:
            fill_tensor_proto(response.outputs[name], inference.outputs[name])
        self.metrics.predict_ok(
            model.name, str(model.version), time.perf_counter() - started, inference.inference_s
        )
        return response

    def _metadata(self, request: pb.GetModelMetadataRequest) -> pb.GetModelMetadataResponse:
        spec = request.model_spec
        model = self.registry.find_available(spec.name, _spec_version(spec), spec.version_label)
        _check_signature(model, spec)
        fields = list(request.metadata_field) or [api.SIGNATURE_DEF_METADATA_FIELD]
        unknown = [f for f in fields if f != api.SIGNATURE_DEF_METADATA_FIELD]
        if unknown:
            raise ServingError(
                _INVALID,
                f"metadata_field {_names(unknown)} unsupported; "
                f"supported: '{api.SIGNATURE_DEF_METADATA_FIELD}'",
            )
        runtime = model.runtime
        signature = pb.SignatureDef(method_name=PREDICT_METHOD)
        for tensor in runtime.inputs:
            signature.inputs[tensor.name].CopyFrom(_tensor_info(tensor))
        for tensor in runtime.outputs:
            signature.outputs[tensor.name].CopyFrom(_tensor_info(tensor))
        signatures = pb.SignatureDefMap()
        signatures.signature_def[SIGNATURE].CopyFrom(signature)
        response = pb.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata[api.SIGNATURE_DEF_METADATA_FIELD].CopyFrom(
            api.pack_signature_def_map(signatures)
        )
        self.metrics.ok(model.name, str(model.version), "GetModelMetadata")
        return response

    def _status(self, request: pb.GetModelStatusRequest) -> pb.GetModelStatusResponse:
        spec = request.model_spec
        model = self.registry.find(spec.name, _spec_version(spec), spec.version_label)
        response = pb.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.version
        status.state = model.state.value
        failed = model.state is State.END and bool(model.error)
        status.status.error_code = pb.UNKNOWN if failed else pb.OK
        status.status.error_message = model.error
        self.metrics.ok(model.name, str(model.version), "GetModelStatus")
        return response
