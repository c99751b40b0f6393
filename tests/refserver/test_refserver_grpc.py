"""refserver's gRPC API on both runtimes: answers, metadata, status, and every error case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import shape_of, to_ndarray, to_tensor_proto
from tests.support.refserver import RefServerProcess, running_refserver

RUNTIMES = ("openvino", "tensorflow")


@pytest.fixture(scope="module", params=RUNTIMES)
def server(request: pytest.FixtureRequest, tiny_repo: Path) -> Iterator[RefServerProcess]:
    with running_refserver(request.param, tiny_repo, nireq=2) as served:
        yield served


@pytest.fixture(scope="module")
def golden(tiny_repo: Path) -> dict[str, np.ndarray]:
    with np.load(tiny_repo / "golden" / "tiny.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def stubs(
    server: RefServerProcess,
) -> Iterator[tuple[api.PredictionServiceStub, api.ModelServiceStub]]:
    with grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS) as channel:
        yield api.PredictionServiceStub(channel), api.ModelServiceStub(channel)


def golden_batch(golden: dict[str, np.ndarray], batch: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(batch) % len(golden["inputs"])
    return golden["inputs"][rows], golden["outputs"][rows]


def predict_request(array: np.ndarray, name: str = "input", **spec) -> pb.PredictRequest:
    request = pb.PredictRequest(model_spec=api.model_spec(spec.pop("model", "tiny"), **spec))
    request.inputs[name].CopyFrom(to_tensor_proto(array))
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


@pytest.mark.parametrize("batch", [1, 7])
def test_predict_matches_golden(stubs, golden, batch: int) -> None:
    predict, _ = stubs
    inputs, expected = golden_batch(golden, batch)
    response = predict.Predict(predict_request(inputs), timeout=30)
    assert list(response.outputs) == ["probabilities"]
    output = response.outputs["probabilities"]
    assert output.dtype == pb.DT_FLOAT and output.tensor_content  # raw bytes, not float_val
    np.testing.assert_allclose(
        to_ndarray(output), expected, atol=float(golden["atol"]), rtol=float(golden["rtol"])
    )
    assert (response.model_spec.name, response.model_spec.version.value) == ("tiny", 1)


def test_predict_accepts_float_val_and_explicit_version(stubs, golden) -> None:
    predict, _ = stubs
    inputs, expected = golden_batch(golden, 2)
    request = pb.PredictRequest(model_spec=api.model_spec("tiny", 1, "serving_default"))
    tensor = request.inputs["input"]
    tensor.dtype = pb.DT_FLOAT
    tensor.tensor_shape.CopyFrom(to_tensor_proto(inputs).tensor_shape)
    tensor.float_val.extend(inputs.ravel().tolist())
    request.output_filter.append("probabilities")
    response = predict.Predict(request, timeout=30)
    np.testing.assert_allclose(
        to_ndarray(response.outputs["probabilities"]),
        expected,
        atol=float(golden["atol"]),
        rtol=float(golden["rtol"]),
    )


def test_get_model_metadata_gives_the_signature(stubs) -> None:
    predict, _ = stubs
    response = predict.GetModelMetadata(
        pb.GetModelMetadataRequest(
            model_spec=api.model_spec("tiny"), metadata_field=["signature_def"]
        ),
        timeout=30,
    )
    assert (response.model_spec.name, response.model_spec.version.value) == ("tiny", 1)
    signature = api.unpack_signature_def_map(response).signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert {k: (v.dtype, shape_of(v.tensor_shape)) for k, v in signature.inputs.items()} == {
        "input": (pb.DT_FLOAT, (-1, 32, 32, 3))
    }
    assert {k: (v.dtype, shape_of(v.tensor_shape)) for k, v in signature.outputs.items()} == {
        "probabilities": (pb.DT_FLOAT, (-1, 10))
    }


def test_get_model_status_is_available(stubs) -> None:
    _, model = stubs
    for spec in (api.model_spec("tiny"), api.model_spec("tiny", 1)):
        response = model.GetModelStatus(pb.GetModelStatusRequest(model_spec=spec), timeout=30)
        (status,) = response.model_version_status
        assert (status.version, status.state) == (1, pb.ModelVersionStatus.AVAILABLE)
        assert (status.status.error_code, status.status.error_message) == (pb.OK, "")


def _wrong_dtype(golden) -> pb.PredictRequest:
    return predict_request(golden_batch(golden, 1)[0].astype(np.float64))


def _short_content(golden) -> pb.PredictRequest:
    request = predict_request(golden_batch(golden, 2)[0])
    tensor = request.inputs["input"]
    tensor.tensor_content = tensor.tensor_content[:-4]
    return request


def _output_filter(golden) -> pb.PredictRequest:
    request = predict_request(golden_batch(golden, 1)[0])
    request.output_filter.append("logits")
    return request


ERROR_CASES = {
    "unknown model": (
        lambda g: predict_request(golden_batch(g, 1)[0], model="resnet"),
        grpc.StatusCode.NOT_FOUND,
        "model 'resnet' not found; this server serves 'tiny'",
    ),
    "unknown version": (
        lambda g: predict_request(golden_batch(g, 1)[0], version=2),
        grpc.StatusCode.NOT_FOUND,
        "model 'tiny' version 2 not found; serving version 1",
    ),
    "unknown input name": (
        lambda g: predict_request(golden_batch(g, 1)[0], name="x"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'x' unknown; model 'tiny' expects 'input'",
    ),
    "missing input": (
        lambda g: pb.PredictRequest(model_spec=api.model_spec("tiny")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input(s) 'input' missing; model 'tiny' expects 'input'",
    ),
    "wrong dtype": (
        _wrong_dtype,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has dtype DT_DOUBLE; model expects DT_FLOAT",
    ),
    "wrong shape": (
        lambda g: predict_request(np.zeros((1, 31, 32, 3), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has shape [1,31,32,3]; model expects [-1,32,32,3]",
    ),
    "wrong rank": (
        lambda g: predict_request(np.zeros((32, 32, 3), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has shape [32,32,3]; model expects [-1,32,32,3]",
    ),
    "empty batch": (
        lambda g: predict_request(np.zeros((0, 32, 32, 3), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input' has an empty batch",
    ),
    "content shorter than shape": (
        _short_content,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input': tensor_content holds 24572 bytes",
    ),
    "unknown output in output_filter": (
        _output_filter,
        grpc.StatusCode.INVALID_ARGUMENT,
        "output_filter names output 'logits'; model 'tiny' has outputs 'probabilities'",
    ),
    "unknown signature": (
        lambda g: predict_request(golden_batch(g, 1)[0], signature_name="classify"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature 'classify' not found; model 'tiny' has 'serving_default'",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_predict_errors_name_what_the_model_expects(stubs, golden, case: str) -> None:
    predict, _ = stubs
    build, code, message = ERROR_CASES[case]
    error = rpc_error(predict.Predict, build(golden))
    assert error.code() == code
    assert message in error.details()
    # The server is still serving after the error.
    inputs, expected = golden_batch(golden, 1)
    response = predict.Predict(predict_request(inputs), timeout=30)
    np.testing.assert_allclose(
        to_ndarray(response.outputs["probabilities"]),
        expected,
        atol=float(golden["atol"]),
        rtol=float(golden["rtol"]),
    )


def test_metadata_and_status_errors(stubs) -> None:
    predict, model = stubs
    error = rpc_error(
        predict.GetModelMetadata, pb.GetModelMetadataRequest(model_spec=api.model_spec("nope"))
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "model 'nope' not found; this server serves 'tiny'",
    )
    error = rpc_error(
        predict.GetModelMetadata,
        pb.GetModelMetadataRequest(model_spec=api.model_spec("tiny"), metadata_field=["graph"]),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata_field 'graph' unsupported; supported: 'signature_def'" in error.details()
    error = rpc_error(
        model.GetModelStatus, pb.GetModelStatusRequest(model_spec=api.model_spec("tiny", 5))
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "model 'tiny' version 5 not found; serving version 1",
    )


def test_batch32_resnet_sized_message_passes_the_grpc_limits(stubs) -> None:
    """19 MB is over gRPC's 4 MiB default: the model, not the transport, must reject it."""
    predict, _ = stubs
    request = predict_request(np.zeros((32, 224, 224, 3), np.float32))
    assert request.ByteSize() > 19_000_000
    error = rpc_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has shape [32,224,224,3]; model expects [-1,32,32,3]" in error.details()


def test_concurrent_predicts_all_answer_correctly(stubs, golden) -> None:
    """More callers than infer requests (nireq 2): every answer right, none stuck."""
    predict, _ = stubs
    calls = []
    for i in range(64):
        rows = (np.arange(1 + i % 4) + i) % len(golden["inputs"])
        calls.append(
            (rows, predict.Predict.future(predict_request(golden["inputs"][rows]), timeout=60))
        )
    for rows, future in calls:
        np.testing.assert_allclose(
            to_ndarray(future.result().outputs["probabilities"]),
            golden["outputs"][rows],
            atol=float(golden["atol"]),
            rtol=float(golden["rtol"]),
        )
