"""Model version states as the handlers report them, with a stand-in runtime (no framework)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from servelab.refserver.config import ModelConfig
from servelab.refserver.metrics import ServerMetrics
from servelab.refserver.models import ModelRegistry, State
from servelab.refserver.rest import status_json
from servelab.refserver.runtime import Inference, InferenceError, TensorSpec
from servelab.refserver.service import Servicer
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_ndarray, to_tensor_proto


class Doubler:
    """Multiplies its input by two; fails on a batch of exactly 3 to stand in for a crash."""

    inputs = (TensorSpec("x", np.dtype("float32"), (-1, 2), "x:0"),)
    outputs = (TensorSpec("y", np.dtype("float32"), (-1, 2), "y:0"),)
    description = "doubler"

    def infer(self, inputs: dict[str, np.ndarray]) -> Inference:
        if inputs["x"].shape[0] == 3:
            raise InferenceError("the runtime fell over")
        return Inference(outputs={"y": inputs["x"] * 2}, inference_s=0.001)

    def close(self) -> None:
        pass


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.ServicerContext the handlers use."""

    def abort(self, code: grpc.StatusCode, details: str):
        raise Aborted(code, details)


@pytest.fixture
def served(tmp_path: Path) -> tuple[ModelRegistry, Servicer]:
    config = ModelConfig(name="m", base_path=tmp_path, version=3, version_path=tmp_path / "3")
    registry = ModelRegistry((config,))
    return registry, Servicer(registry, ServerMetrics())


def _status(servicer: Servicer) -> pb.ModelVersionStatus:
    response = servicer.get_model_status(
        pb.GetModelStatusRequest(model_spec=api.model_spec("m")), Context()
    )
    (status,) = response.model_version_status
    return status


def _predict(servicer: Servicer, array: np.ndarray) -> pb.PredictResponse:
    request = pb.PredictRequest(model_spec=api.model_spec("m"))
    request.inputs["x"].CopyFrom(to_tensor_proto(array))
    return servicer.predict(request, Context())


def test_states_go_start_loading_available_end(served) -> None:
    registry, servicer = served
    (model,) = registry
    x = np.ones((1, 2), np.float32)
    assert _status(servicer).state == pb.ModelVersionStatus.START
    registry.set_state(model, State.LOADING)
    assert _status(servicer).state == pb.ModelVersionStatus.LOADING
    with pytest.raises(Aborted) as caught:
        _predict(servicer, x)
    assert caught.value.args == (grpc.StatusCode.UNAVAILABLE, "model 'm' version 3 is LOADING")
    assert status_json(registry, "m", None)["model_version_status"][0]["state"] == "LOADING"

    registry.set_state(model, State.AVAILABLE, runtime=Doubler())
    assert _status(servicer).state == pb.ModelVersionStatus.AVAILABLE
    np.testing.assert_array_equal(to_ndarray(_predict(servicer, x).outputs["y"]), x * 2)

    registry.set_state(model, State.END, error="out of memory")
    status = _status(servicer)
    assert (status.state, status.status.error_code, status.status.error_message) == (
        pb.ModelVersionStatus.END,
        pb.UNKNOWN,
        "out of memory",
    )
    assert status_json(registry, "m", 3)["model_version_status"][0]["status"] == {
        "error_code": "UNKNOWN",
        "error_message": "out of memory",
    }


def test_a_runtime_failure_is_internal_and_the_next_request_works(served) -> None:
    registry, servicer = served
    (model,) = registry
    registry.set_state(model, State.AVAILABLE, runtime=Doubler())
    with pytest.raises(Aborted) as caught:
        _predict(servicer, np.ones((3, 2), np.float32))
    assert caught.value.args == (grpc.StatusCode.INTERNAL, "the runtime fell over")
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(to_ndarray(_predict(servicer, x).outputs["y"]), x * 2)


def test_version_labels_are_not_found(served) -> None:
    registry, servicer = served
    (model,) = registry
    registry.set_state(model, State.AVAILABLE, runtime=Doubler())
    request = pb.PredictRequest(model_spec=pb.ModelSpec(name="m", version_label="stable"))
    with pytest.raises(Aborted) as caught:
        servicer.predict(request, Context())
    assert caught.value.args == (
        grpc.StatusCode.NOT_FOUND,
        "model 'm' has no version label 'stable'; it serves version 3 (no labels)",
    )
