"""The OpenVINO runtime: a compiled model behind an AsyncInferQueue.

A gRPC worker thread hands its decoded inputs to the queue and waits on an
event of its own; the wait releases the GIL, so while OpenVINO's threads run
the network, other workers decode, encode and submit. The queue's callback
copies the outputs out of the infer request (which is reused at once) and
wakes the waiting worker.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import openvino as ov

from servelab.refserver.config import ModelConfig, model_file
from servelab.refserver.runtime import Inference, InferenceError, TensorSpec


class _Pending:
    """One submitted inference: the worker waits on `done`, the callback fills the rest."""

    __slots__ = ("done", "error", "inference_s", "inputs", "outputs")

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self.done = threading.Event()
        self.inputs = inputs  # kept alive while OpenVINO may read it (share_inputs)
        self.outputs: dict[str, np.ndarray] = {}
        self.inference_s = 0.0
        self.error: str | None = None


def _spec(port: Any) -> TensorSpec:
    partial = port.get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else -1 for d in partial)
    name = port.get_any_name()
    return TensorSpec(
        name=name, dtype=np.dtype(port.get_element_type().to_dtype()), shape=shape, tensor_name=name
    )


def compile_config(model: ModelConfig, performance_hint: str) -> dict[str, Any]:
    """The compile_model properties: the hint, overridden by the model's plugin_config."""
    return {"PERFORMANCE_HINT": performance_hint, **model.plugin_config}


class OpenVINORuntime:
    def __init__(self, model: ModelConfig, performance_hint: str) -> None:
        core = ov.Core()
        network = core.read_model(model_file("openvino", model.version_path))
        config = compile_config(model, performance_hint)
        try:
            self.compiled = core.compile_model(network, model.target_device, config)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InferenceError(
                f"OpenVINO cannot compile for {model.target_device} with {config}: {first}"
            ) from None
        self.nireq = model.nireq or int(
            self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        )
        self.queue = ov.AsyncInferQueue(self.compiled, self.nireq)
        self.queue.set_callback(self._completed)
        self._submit = threading.Lock()
        self.inputs = tuple(_spec(port) for port in self.compiled.inputs)
        self.outputs = tuple(_spec(port) for port in self.compiled.outputs)
        self._output_names = [spec.name for spec in self.outputs]
        hint = config.get("PERFORMANCE_HINT", performance_hint)
        # bf16 on CPUs that have it, unless plugin_config asks for f32: say which.
        try:
            value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            precision = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        except RuntimeError:
            precision = "device default"
        self.description = (
            f"OpenVINO {ov.get_version().split('-')[0]} {model.target_device} "
            f"hint={hint} nireq={self.nireq} precision={precision}"
        )

    def _completed(self, request: ov.InferRequest, pending: _Pending) -> None:
        try:
            pending.outputs = {
                name: request.get_output_tensor(index).data.copy()
                for index, name in enumerate(self._output_names)
            }
            pending.inference_s = request.latency / 1000.0
        except Exception as exc:  # the worker must wake up whatever happened
            pending.error = f"{type(exc).__name__}: {exc}"
        finally:
            pending.done.set()

    def infer(self, inputs: dict[str, np.ndarray]) -> Inference:
        pending = _Pending(inputs)
        try:
            # One submitter at a time: AsyncInferQueue.start_async deadlocks when several
            # threads call it at once (one holds the queue's mutex while it waits for an
            # idle request, whose completion callback needs that mutex). The others wait
            # here without the GIL, and the holder waits for an idle request without it.
            with self._submit:
                self.queue.start_async(inputs, userdata=pending, share_inputs=True)
        except RuntimeError as exc:
            raise InferenceError(f"OpenVINO refused the inputs: {exc}") from None
        pending.done.wait()
        if pending.error is not None:
            raise InferenceError(pending.error)
        return Inference(outputs=pending.outputs, inference_s=pending.inference_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for requests still running, but never hang the shutdown on them."""
        waiter = threading.Thread(target=self.queue.wait_all, name="close", daemon=True)
        waiter.start()
        waiter.join(timeout_s)
