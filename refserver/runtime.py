"""The interface both runtimes implement, and the lazy loader that picks one.

Each runtime lives in its own module and imports its framework only when a
model is loaded, so an OpenVINO server never imports TensorFlow and the other
way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from servelab.refserver.config import ModelConfig


class InferenceError(RuntimeError):
    """The runtime failed on inputs that passed validation."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: -1 marks a dynamic dimension (the batch)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    tensor_name: str  # the name the runtime knows the tensor by (TensorInfo.name)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True)
        )


@dataclass(frozen=True)
class Inference:
    """The outputs of one inference and the time the runtime alone took."""

    outputs: dict[str, np.ndarray]
    inference_s: float


class Runtime(Protocol):
    """One loaded model version, ready to run inferences from many threads at once."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str  # e.g. "OpenVINO 2026.4 CPU THROUGHPUT nireq=2"

    def infer(self, inputs: dict[str, np.ndarray]) -> Inference: ...

    def close(self) -> None: ...


def load_runtime(kind: str, model: ModelConfig, performance_hint: str) -> Runtime:
    """Load `model` on the runtime `kind`, importing that runtime's framework now."""
    if kind == "openvino":
        from servelab.refserver.openvino_runtime import OpenVINORuntime

        return OpenVINORuntime(model, performance_hint)
    if kind == "tensorflow":
        from servelab.refserver.tensorflow_runtime import TensorFlowRuntime

        return TensorFlowRuntime(model)
    raise ValueError(f"unknown runtime {kind!r}")
