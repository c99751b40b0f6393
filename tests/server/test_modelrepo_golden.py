"""Golden sample selection: tolerance from measured differences, clear top-1, IR checked."""

from __future__ import annotations

import numpy as np
import pytest

from servelab.server.modelrepo.errors import ModelBuildError
from servelab.server.modelrepo.golden import nice_ceiling, select_golden


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def reference() -> np.ndarray:
    rng = np.random.default_rng(1)
    return _softmax(rng.normal(size=(20, 10)) * 3)


def test_ir_that_disagrees_fails_the_build(reference: np.ndarray) -> None:
    wrong = reference.copy()
    wrong[3] = np.roll(wrong[3], 1)
    with pytest.raises(ModelBuildError, match="the IR disagrees with the SavedModel"):
        select_golden(
            "m",
            reference,
            {"openvino_f32_b1": wrong},
            4,
            max_atol=0.05,
            exact={"openvino_f32_b1": 1e-3},
        )


def test_tolerance_covers_reduced_precision_and_margins_exceed_it(reference: np.ndarray) -> None:
    noise = np.random.default_rng(2).normal(scale=2e-3, size=reference.shape)
    bf16 = (reference + noise).astype(np.float32)
    selection = select_golden(
        "m",
        reference,
        {"openvino_f32_b1": reference.copy(), "openvino_bf16_b1": bf16},
        4,
        max_atol=0.05,
        exact={"openvino_f32_b1": 1e-3},
    )
    chosen = selection.indices
    assert len(chosen) == 4
    diff = np.abs(bf16[chosen] - reference[chosen]).max()
    assert selection.atol >= 4 * diff
    assert selection.max_abs_diff["openvino_bf16_b1"] == pytest.approx(diff)
    top2 = np.sort(reference[chosen], axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 10 * selection.atol).all()
    assert (bf16[chosen].argmax(axis=1) == reference[chosen].argmax(axis=1)).all()


def test_flat_outputs_cannot_give_golden_samples() -> None:
    flat = np.full((12, 10), 0.1, dtype=np.float32)
    flat[:, 0] += 1e-4
    with pytest.raises(ModelBuildError, match="fewer than 4 of 12"):
        select_golden("m", flat, {}, 4, max_atol=0.05, exact={})


def test_non_finite_outputs_fail() -> None:
    bad = np.full((12, 10), np.nan, dtype=np.float32)
    with pytest.raises(ModelBuildError, match="non-finite"):
        select_golden("m", bad, {}, 4, max_atol=0.05, exact={})


@pytest.mark.parametrize(
    ("value", "expected"), [(0.0057, 0.01), (0.004, 0.005), (1.2e-4, 2e-4), (0.1, 0.1)]
)
def test_nice_ceiling(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)
