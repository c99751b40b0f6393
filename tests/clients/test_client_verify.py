"""Response checks and workload validation, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servelab.clients.stats import RequestOutcome, WindowRecorder
from servelab.clients.verify import ExpectedValues, OutputSpec, ResponseVerifier
from servelab.clients.workload import (
    BadInput,
    Golden,
    ModelSignature,
    TensorSpec,
    build_workload,
)
from servelab.wire import tensors
from servelab.wire import tfserving_pb2 as pb

F32 = np.dtype("float32")


def _golden() -> Golden:
    rng = np.random.default_rng(0)
    outputs = rng.random((3, 10), dtype=np.float32)
    outputs[np.arange(3), [2, 5, 7]] += 1.0  # an unambiguous top-1 per sample
    return Golden(
        inputs=rng.random((3, 32, 32, 3), dtype=np.float32),
        outputs=outputs,
        input_name="input",
        output_name="probabilities",
        atol=0.01,
        rtol=1e-3,
    )


def _signature(batch_dim: int = -1, input_shape: tuple[int, ...] = (32, 32, 3)) -> ModelSignature:
    return ModelSignature(
        model="tiny",
        version=1,
        inputs=(TensorSpec("input", F32, (batch_dim, *input_shape)),),
        outputs=(TensorSpec("probabilities", F32, (batch_dim, 10)),),
    )


def _response(array: np.ndarray, name: str = "probabilities") -> pb.PredictResponse:
    response = pb.PredictResponse()
    response.outputs[name].CopyFrom(tensors.to_tensor_proto(array))
    return response


def test_golden_batch_rows_are_taken_cyclically_and_verified() -> None:
    golden = _golden()
    workload = build_workload(_signature(), "serving_default", 5, "golden", golden)
    assert workload.batch.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(workload.batch[3], golden.inputs[0])
    verifier = ResponseVerifier(workload.output, workload.expected)
    expected = golden.outputs[np.arange(5) % 3]

    assert verifier.check(_response(expected + 0.005).outputs) is None
    # Values decoded from the typed repeated field pass as well.
    typed = pb.PredictResponse()
    typed.outputs["probabilities"].dtype = pb.DT_FLOAT
    typed.outputs["probabilities"].tensor_shape.CopyFrom(tensors.shape_proto([5, 10]))
    typed.outputs["probabilities"].float_val.extend(expected.ravel().tolist())
    assert verifier.check(typed.outputs) is None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda a: _response(a, name="logits"), "missing"),
        (lambda a: _response(a.astype(np.float64)), "dtype DT_DOUBLE"),
        (lambda a: _response(a[:, :9]), "shape"),
        (lambda a: _response(a[::-1].copy()), "top-1"),
        (lambda a: _response(a + 0.05), "atol"),
        (lambda a: _response(np.full_like(a, np.nan)), "top-1|value"),
    ],
)
def test_wrong_answers_are_reported_not_raised(mutate, reason: str) -> None:
    golden = _golden()
    workload = build_workload(_signature(), "serving_default", 3, "golden", golden)
    verifier = ResponseVerifier(workload.output, workload.expected)
    failure = verifier.check(mutate(golden.outputs.copy()).outputs)
    assert failure is not None
    assert any(word in failure for word in reason.split("|"))


def test_without_golden_only_name_dtype_and_shape_are_checked() -> None:
    verifier = ResponseVerifier(OutputSpec("probabilities", F32, (2, 10)))
    assert verifier.check(_response(np.zeros((2, 10), F32)).outputs) is None
    assert "shape" in verifier.check(_response(np.zeros((3, 10), F32)).outputs)
    assert verifier.check_array("probabilities", np.zeros((2, 10), F32)) is None


def test_check_array_applies_the_same_rules() -> None:
    expected = ExpectedValues(np.eye(2, 10, dtype=F32), atol=0.01, rtol=0.0)
    verifier = ResponseVerifier(OutputSpec("probabilities", F32, (2, 10)), expected)
    assert verifier.check_array("probabilities", np.eye(2, 10, dtype=F32)) is None
    assert "top-1" in verifier.check_array("probabilities", np.eye(2, 10, k=1, dtype=F32))


def test_batch_larger_than_a_fixed_batch_dimension_is_bad_input() -> None:
    with pytest.raises(BadInput, match="batch 8 is larger than model 'tiny' allows"):
        build_workload(_signature(batch_dim=1), "serving_default", 8, "golden", _golden())


def test_golden_of_another_shape_is_bad_input() -> None:
    signature = _signature(input_shape=(224, 224, 3))
    with pytest.raises(BadInput, match=r"golden input has sample shape \[32, 32, 3\]"):
        build_workload(signature, "serving_default", 1, "golden", _golden())


def test_npy_input_is_checked_against_the_signature(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.ones((32, 32, 3), F32))  # one sample, no batch dimension
    workload = build_workload(_signature(), "serving_default", 4, str(good), None)
    assert workload.batch.shape == (4, 32, 32, 3)
    assert workload.expected is None

    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((2, 16, 16, 3), F32))
    with pytest.raises(BadInput, match="sample shape"):
        build_workload(_signature(), "serving_default", 1, str(bad), None)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.ones((2, 32, 32, 3), np.int32))
    with pytest.raises(BadInput, match="holds int32"):
        build_workload(_signature(), "serving_default", 1, str(ints), None)


def test_random_input_has_the_model_shape() -> None:
    workload = build_workload(_signature(), "serving_default", 3, "random", None, seed=1)
    assert workload.batch.shape == (3, 32, 32, 3)
    assert workload.batch.dtype == F32
    assert workload.output == OutputSpec("probabilities", F32, (3, 10))


def test_recorder_counts_only_the_window_into_latency_and_timeline() -> None:
    s = 1_000_000_000
    recorder = WindowRecorder(window_start_ns=10 * s, window_end_ns=12 * s)
    for at in (9 * s, 10 * s, 11 * s + 5, 12 * s):
        recorder.sent()
        recorder.record(at, RequestOutcome(True, 0.002))
    recorder.record(11 * s, RequestOutcome(False, 0.001, "UNAVAILABLE"), "gone")
    recorder.record(11 * s, RequestOutcome(True, 0.002, None, "top-1 class 3"))

    assert recorder.window.completed == 3
    assert recorder.window.verified == 2
    assert recorder.window.verification_failures == 1
    assert dict(recorder.window.errors) == {"UNAVAILABLE": 1}
    assert recorder.all_phases.completed == 5
    assert recorder.timeline == [1, 2]
    assert recorder.histogram.count == 3
    assert recorder.first_error == "UNAVAILABLE: gone"
    recorder.close_window(11 * s)
    assert recorder.timeline == [1]
