"""Checks of one PredictResponse: output name, dtype and shape; golden values.

A check returns None for a correct response and a short reason otherwise; it never
raises for a wrong answer (a wrong answer is data, counted by the worker).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from servelab.wire import tensors


@dataclass(frozen=True)
class OutputSpec:
    """The output a response must carry: name, dtype and full shape (batch included)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 where the model leaves a dimension dynamic


@dataclass(frozen=True)
class ExpectedValues:
    """Golden outputs for the batch being sent, with the tolerance they must meet."""

    values: np.ndarray  # [batch, classes]
    atol: float
    rtol: float

    @property
    def top1(self) -> np.ndarray:
        return self.values.argmax(axis=1)


class ResponseVerifier:
    """Verifies responses to one fixed request; cheap enough to run on every response."""

    def __init__(self, output: OutputSpec, expected: ExpectedValues | None = None) -> None:
        self.output = output
        self.expected = expected
        self._wire_dtype = tensors.data_type(output.dtype)
        # A fully known shape is compared as a message and decoded in one step: this
        # runs on every response, and the general path costs several times more.
        self._shape_proto = None
        if output.shape and all(d >= 0 for d in output.shape):
            self._shape_proto = tensors.shape_proto(output.shape)
            self._wire_numpy = tensors.numpy_dtype(self._wire_dtype)
            self._content_bytes = math.prod(output.shape) * self._wire_numpy.itemsize
        if expected is not None:
            if expected.values.ndim != 2:
                raise ValueError("expected values must be [batch, classes]")
            self._top1 = expected.top1
            self._values = expected.values.astype(output.dtype, copy=False)
            self._tolerance = expected.atol + expected.rtol * np.abs(self._values)

    def check(self, outputs: Mapping[str, Any]) -> str | None:
        """Check a response's `outputs` map (servelab's or TF Serving's TensorProto)."""
        name = self.output.name
        if name not in outputs:
            return f"output {name!r} missing (got {sorted(outputs)})"
        proto = outputs[name]
        if (
            self._shape_proto is not None
            and proto.dtype == self._wire_dtype
            and proto.tensor_shape == self._shape_proto
        ):
            content = proto.tensor_content
            if len(content) == self._content_bytes:
                array = np.frombuffer(content, dtype=self._wire_numpy).reshape(self.output.shape)
                return self._check_values(array)
        if proto.dtype != self._wire_dtype:
            return (
                f"output {name!r} has dtype {tensors.dtype_name(proto.dtype)}, "
                f"expected {tensors.dtype_name(self._wire_dtype)}"
            )
        shape = tensors.shape_of(proto.tensor_shape)
        if not self._shape_ok(shape):
            return f"output {name!r} has shape {list(shape)}, expected {list(self.output.shape)}"
        try:
            array = tensors.to_ndarray(proto)
        except tensors.TensorError as error:
            return f"output {name!r} cannot be decoded: {error}"
        return self._check_values(array)

    def check_array(self, name: str, array: np.ndarray) -> str | None:
        """Check an output already decoded (as the published clients did with make_ndarray)."""
        if name != self.output.name:
            return f"output {name!r} is not the expected {self.output.name!r}"
        if array.dtype != self.output.dtype:
            return f"output {name!r} has dtype {array.dtype}, expected {self.output.dtype}"
        if not self._shape_ok(array.shape):
            return (
                f"output {name!r} has shape {list(array.shape)}, expected {list(self.output.shape)}"
            )
        return self._check_values(array)

    def _shape_ok(self, shape: tuple[int, ...]) -> bool:
        want = self.output.shape
        if len(shape) != len(want):
            return False
        return all(w < 0 or w == s for s, w in zip(shape, want, strict=True))

    def _check_values(self, array: np.ndarray) -> str | None:
        if self.expected is None:
            return None
        if array.shape != self._values.shape:
            golden = list(self._values.shape)
            return f"output shape {list(array.shape)} differs from golden {golden}"
        top1 = array.argmax(axis=1)
        if not (top1 == self._top1).all():
            row = int(np.flatnonzero(top1 != self._top1)[0])
            return f"top-1 class {int(top1[row])} in row {row}, expected {int(self._top1[row])}"
        if not (np.abs(array - self._values) <= self._tolerance).all():
            excess = np.abs(array - self._values) - self._tolerance
            excess = np.where(np.isnan(excess), np.inf, excess)
            row, col = np.unravel_index(int(np.argmax(excess)), excess.shape)
            return (
                f"value [{row}, {col}] = {float(array[row, col]):.6g}, golden "
                f"{float(self._values[row, col]):.6g} (atol {self.expected.atol:g}, "
                f"rtol {self.expected.rtol:g})"
            )
        return None
