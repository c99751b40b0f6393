"""servelab's wire format against the official `tensorflow-serving-api` messages and stubs.

(a) Messages built with servelab.wire parse with the official classes into the
same values, and back. (b) A client written with the official stubs and
`tf.make_tensor_proto` / `tf.make_ndarray` gets golden answers from refserver.

TensorFlow is imported once, here, for the whole module (it takes seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_ndarray, to_tensor_proto
from tests.support.refserver import RefServerProcess, running_refserver

tf = pytest.importorskip("tensorflow")
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def _dims(shape) -> list[int]:
    return [d.size for d in shape.dim]


# (a) the messages


def test_predict_request_parses_with_the_official_class_and_back() -> None:
    array = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) / 7
    ours = pb.PredictRequest(model_spec=api.model_spec("resnet_v1_50", 3, "serving_default"))
    ours.inputs["input"].CopyFrom(to_tensor_proto(array))
    ours.output_filter.append("probabilities")

    official = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert official.model_spec.name == "resnet_v1_50"
    assert official.model_spec.HasField("version")
    assert official.model_spec.version.value == 3
    assert official.model_spec.signature_name == "serving_default"
    assert list(official.output_filter) == ["probabilities"]
    tensor = official.inputs["input"]
    assert tensor.dtype == types_pb2.DT_FLOAT
    assert _dims(tensor.tensor_shape) == [2, 4, 4, 3]
    assert tensor.tensor_content == array.tobytes()
    np.testing.assert_array_equal(tf.make_ndarray(tensor), array)

    back = pb.PredictRequest.FromString(official.SerializeToString())
    assert back == ours


def test_official_tensor_protos_decode_with_servelab() -> None:
    """make_tensor_proto's tensor_content, and the float_val a hand-written client sends."""
    array = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    official = predict_pb2.PredictRequest()
    official.model_spec.name = "tiny"
    official.inputs["content"].CopyFrom(tf.make_tensor_proto(array))
    official.inputs["values"].dtype = types_pb2.DT_FLOAT
    official.inputs["values"].tensor_shape.dim.add(size=24)
    official.inputs["values"].float_val.extend(array.ravel().tolist())
    official.inputs["ints"].CopyFrom(tf.make_tensor_proto(np.arange(6, dtype=np.int64)))

    ours = pb.PredictRequest.FromString(official.SerializeToString())
    assert ours.model_spec.name == "tiny" and not ours.model_spec.HasField("version")
    np.testing.assert_array_equal(to_ndarray(ours.inputs["content"]), array)
    np.testing.assert_array_equal(to_ndarray(ours.inputs["values"]), array.ravel())
    np.testing.assert_array_equal(to_ndarray(ours.inputs["ints"]), np.arange(6))


def test_predict_response_parses_with_the_official_class() -> None:
    probabilities = np.full((3, 10), 0.1, dtype=np.float32)
    ours = pb.PredictResponse(model_spec=api.model_spec("tiny", 1, "serving_default"))
    ours.outputs["probabilities"].CopyFrom(to_tensor_proto(probabilities))
    official = predict_pb2.PredictResponse.FromString(ours.SerializeToString())
    assert (official.model_spec.name, official.model_spec.version.value) == ("tiny", 1)
    np.testing.assert_array_equal(tf.make_ndarray(official.outputs["probabilities"]), probabilities)


def _signature_map() -> pb.SignatureDefMap:
    signatures = pb.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    signature.inputs["input"].CopyFrom(
        pb.TensorInfo(
            name="serving_default_input:0",
            dtype=pb.DT_FLOAT,
            tensor_shape=pb.TensorShapeProto(
                dim=[pb.TensorShapeProto.Dim(size=s) for s in (-1, 224, 224, 3)]
            ),
        )
    )
    signature.outputs["probabilities"].CopyFrom(
        pb.TensorInfo(
            name="StatefulPartitionedCall:0",
            dtype=pb.DT_FLOAT,
            tensor_shape=pb.TensorShapeProto(
                dim=[pb.TensorShapeProto.Dim(size=s) for s in (-1, 1000)]
            ),
        )
    )
    return signatures


def test_model_metadata_response_parses_with_the_official_class_and_back() -> None:
    ours = pb.GetModelMetadataResponse(model_spec=api.model_spec("resnet_v1_50", 1))
    ours.metadata["signature_def"].CopyFrom(api.pack_signature_def_map(_signature_map()))

    official = get_model_metadata_pb2.GetModelMetadataResponse.FromString(ours.SerializeToString())
    assert official.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert official.metadata["signature_def"].Unpack(signatures)  # the type URL matches
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert signature.inputs["input"].name == "serving_default_input:0"
    assert signature.inputs["input"].dtype == types_pb2.DT_FLOAT
    assert _dims(signature.inputs["input"].tensor_shape) == [-1, 224, 224, 3]
    assert _dims(signature.outputs["probabilities"].tensor_shape) == [-1, 1000]

    back = pb.GetModelMetadataResponse.FromString(official.SerializeToString())
    assert api.unpack_signature_def_map(back) == _signature_map()


def test_model_status_response_parses_with_the_official_class_and_back() -> None:
    ours = pb.GetModelStatusResponse()
    status = ours.model_version_status.add(version=2, state=pb.ModelVersionStatus.AVAILABLE)
    status.status.error_code = pb.OK
    failed = ours.model_version_status.add(version=1, state=pb.ModelVersionStatus.END)
    failed.status.error_code = pb.UNKNOWN
    failed.status.error_message = "could not load"

    official = get_model_status_pb2.GetModelStatusResponse.FromString(ours.SerializeToString())
    available, ended = official.model_version_status
    state = get_model_status_pb2.ModelVersionStatus.State
    assert (available.version, available.state, available.status.error_code) == (
        2,
        state.AVAILABLE,
        0,
    )
    assert (ended.version, ended.state, ended.status.error_message) == (
        1,
        state.END,
        "could not load",
    )
    assert pb.GetModelStatusResponse.FromString(official.SerializeToString()) == ours


# (b) the official client against refserver


@pytest.fixture(scope="module", params=["openvino", "tensorflow"])
def server(request: pytest.FixtureRequest, tiny_repo: Path) -> Iterator[RefServerProcess]:
    with running_refserver(request.param, tiny_repo) as served:
        yield served


@pytest.fixture
def channel(server: RefServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS) as opened:
        yield opened


@pytest.mark.parametrize("batch", [1, 5])
def test_official_stub_gets_golden_answers(channel, tiny_repo: Path, batch: int) -> None:
    with np.load(tiny_repo / "golden" / "tiny.npz") as golden:
        rows = np.arange(batch) % len(golden["inputs"])
        inputs, expected = golden["inputs"][rows], golden["outputs"][rows]
        atol, rtol = float(golden["atol"]), float(golden["rtol"])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serving_default"
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(inputs))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(request, timeout=30)
    outputs = tf.make_ndarray(response.outputs["probabilities"])
    assert outputs.shape == (batch, 10)
    np.testing.assert_allclose(outputs, expected, atol=atol, rtol=rtol)
    assert response.model_spec.version.value == 1


def test_official_stub_unpacks_the_signature_def_map(channel) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tiny"
    request.metadata_field.append("signature_def")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert {k: (v.dtype, _dims(v.tensor_shape)) for k, v in signature.inputs.items()} == {
        "input": (types_pb2.DT_FLOAT, [-1, 32, 32, 3])
    }
    assert {k: (v.dtype, _dims(v.tensor_shape)) for k, v in signature.outputs.items()} == {
        "probabilities": (types_pb2.DT_FLOAT, [-1, 10])
    }


def test_official_model_service_stub_sees_available(channel) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    (status,) = stub.GetModelStatus(request, timeout=30).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_official_stub_gets_not_found_for_another_version(channel) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.version.value = 7
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 32, 32, 3), np.float32)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "model 'tiny' version 7 not found; serving version 1"
