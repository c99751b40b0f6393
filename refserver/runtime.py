"""The interface both runtimes implement (refserver/openvino_runtime.py and
tensorflow_runtime.py); refserver/server.py picks one per model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
