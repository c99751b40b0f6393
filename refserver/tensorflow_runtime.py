"""The TensorFlow runtime: a SavedModel's `serving_default` signature, called eagerly.

TensorFlow runs the signature's ops without the GIL, so gRPC worker threads
calling it at once overlap the way TF Serving's session threads do.
"""

from __future__ import annotations

import os
import time

# TensorFlow's C++ logging would otherwise flood the server's log at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from servelab.refserver.config import ModelConfig
from servelab.refserver.runtime import Inference, InferenceError, TensorSpec

SIGNATURE = "serving_default"


def _tensor_names(version_path: str) -> tuple[dict[str, str], dict[str, str]]:
    """The graph tensor names of serving_default's inputs and outputs, as TF Serving shows them."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_path, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        if SIGNATURE in meta_graph.signature_def:
            signature = meta_graph.signature_def[SIGNATURE]
            return (
                {key: info.name for key, info in signature.inputs.items()},
                {key: info.name for key, info in signature.outputs.items()},
            )
    return {}, {}


def _spec(name: str, spec: tf.TensorSpec, tensor_names: dict[str, str]) -> TensorSpec:
    shape = tuple(-1 if d is None else int(d) for d in spec.shape.as_list())
    return TensorSpec(
        name=name,
        dtype=np.dtype(spec.dtype.as_numpy_dtype),
        shape=shape,
        tensor_name=tensor_names.get(name, name),
    )


class TensorFlowRuntime:
    def __init__(self, model: ModelConfig) -> None:
        self._loaded = tf.saved_model.load(str(model.version_path))
        if SIGNATURE not in self._loaded.signatures:
            known = sorted(self._loaded.signatures.keys())
            raise InferenceError(f"SavedModel has no {SIGNATURE!r} signature (it has {known})")
        self._signature = self._loaded.signatures[SIGNATURE]
        input_names, output_names = _tensor_names(str(model.version_path))
        _, input_specs = self._signature.structured_input_signature
        self.inputs = tuple(
            _spec(name, spec, input_names) for name, spec in sorted(input_specs.items())
        )
        self.outputs = tuple(
            _spec(name, spec, output_names)
            for name, spec in sorted(self._signature.structured_outputs.items())
        )
        self.description = f"TensorFlow {tf.__version__} signature={SIGNATURE}"

    def infer(self, inputs: dict[str, np.ndarray]) -> Inference:
        started = time.perf_counter()
        try:
            results = self._signature(**{name: tf.constant(a) for name, a in inputs.items()})
            outputs = {name: tensor.numpy() for name, tensor in results.items()}
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise InferenceError(f"TensorFlow failed: {message.strip().splitlines()[0]}") from None
        return Inference(outputs=outputs, inference_s=time.perf_counter() - started)

    def close(self) -> None:
        self._signature = None
