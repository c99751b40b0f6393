"""TF Serving's gRPC method paths bound to servelab's own messages.

The service names stay TF Serving's (`tensorflow.serving.PredictionService`), so
a stub here talks to TF Serving, OpenVINO Model Server or refserver alike, and a
server registered here answers the official `tensorflow-serving-api` stubs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from servelab.wire import tfserving_pb2 as pb

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

PREDICT = f"/{PREDICTION_SERVICE}/Predict"
GET_MODEL_METADATA = f"/{PREDICTION_SERVICE}/GetModelMetadata"
GET_MODEL_STATUS = f"/{MODEL_SERVICE}/GetModelStatus"

# GetModelMetadataResponse.metadata["signature_def"] is an Any holding a
# SignatureDefMap; receivers check the type URL, which names TF Serving's type.
SIGNATURE_DEF_METADATA_FIELD = "signature_def"
SIGNATURE_DEF_MAP_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"

# Batch 32 of 224x224x3 FP32 is about 19 MB; gRPC's default limit is 4 MiB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)


@dataclass(frozen=True)
class _Method:
    path: str
    request: type
    response: type


_PREDICTION_METHODS = {
    "Predict": _Method(PREDICT, pb.PredictRequest, pb.PredictResponse),
    "GetModelMetadata": _Method(
        GET_MODEL_METADATA, pb.GetModelMetadataRequest, pb.GetModelMetadataResponse
    ),
}
_MODEL_METHODS = {
    "GetModelStatus": _Method(
        GET_MODEL_STATUS, pb.GetModelStatusRequest, pb.GetModelStatusResponse
    ),
}


def _bind(channel: grpc.Channel, method: _Method) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        method.path,
        request_serializer=method.request.SerializeToString,
        response_deserializer=method.response.FromString,
    )


class PredictionServiceStub:
    """Client side of `tensorflow.serving.PredictionService` (Predict, GetModelMetadata)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Predict = _bind(channel, _PREDICTION_METHODS["Predict"])
        self.GetModelMetadata = _bind(channel, _PREDICTION_METHODS["GetModelMetadata"])


class ModelServiceStub:
    """Client side of `tensorflow.serving.ModelService` (GetModelStatus)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.GetModelStatus = _bind(channel, _MODEL_METHODS["GetModelStatus"])


Handler = Callable[[Any, grpc.ServicerContext], Any]


def _generic_handler(
    service: str, methods: dict[str, _Method], handlers: dict[str, Handler]
) -> grpc.GenericRpcHandler:
    unknown = set(handlers) - set(methods)
    if unknown:
        raise ValueError(f"{service} has no method(s) {sorted(unknown)}; known: {sorted(methods)}")
    return grpc.method_handlers_generic_handler(
        service,
        {
            name: grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=methods[name].request.FromString,
                response_serializer=methods[name].response.SerializeToString,
            )
            for name, handler in handlers.items()
        },
    )


def prediction_service_handler(
    predict: Handler, get_model_metadata: Handler
) -> grpc.GenericRpcHandler:
    """A handler that serves PredictionService's Predict and GetModelMetadata."""
    return _generic_handler(
        PREDICTION_SERVICE,
        _PREDICTION_METHODS,
        {"Predict": predict, "GetModelMetadata": get_model_metadata},
    )


def model_service_handler(get_model_status: Handler) -> grpc.GenericRpcHandler:
    """A handler that serves ModelService's GetModelStatus."""
    return _generic_handler(MODEL_SERVICE, _MODEL_METHODS, {"GetModelStatus": get_model_status})


def model_spec(name: str, version: int | None = None, signature_name: str = "") -> pb.ModelSpec:
    """A ModelSpec for `name`, at `version` if one is given (else the server's latest)."""
    spec = pb.ModelSpec(name=name, signature_name=signature_name)
    if version is not None:
        spec.version.value = version
    return spec


def pack_signature_def_map(signatures: pb.SignatureDefMap) -> Any:
    """Pack a SignatureDefMap into an Any with TF Serving's type URL."""
    from google.protobuf import any_pb2

    return any_pb2.Any(type_url=SIGNATURE_DEF_MAP_TYPE_URL, value=signatures.SerializeToString())


def unpack_signature_def_map(response: pb.GetModelMetadataResponse) -> pb.SignatureDefMap:
    """The SignatureDefMap of a GetModelMetadataResponse; ValueError if it has none."""
    packed = response.metadata.get(SIGNATURE_DEF_METADATA_FIELD)
    if packed is None:
        raise ValueError("GetModelMetadataResponse carries no 'signature_def' metadata")
    if packed.type_url != SIGNATURE_DEF_MAP_TYPE_URL:
        raise ValueError(
            f"signature_def metadata has type {packed.type_url!r}, "
            f"expected {SIGNATURE_DEF_MAP_TYPE_URL!r}"
        )
    return pb.SignatureDefMap.FromString(packed.value)
