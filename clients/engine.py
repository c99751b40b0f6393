"""What a worker's engines share: the load's settings, the worker's part of it, the
request (built once), and the protocol the worker drives an engine through.

clients/worker.py picks an engine and keeps the schedule; clients/h2engine.py is the
default engine. Both import this module, and it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from servelab.clients.stats import WindowRecorder
from servelab.clients.workload import Workload
from servelab.wire import api, tensors
from servelab.wire import tfserving_pb2 as pb


@dataclass(frozen=True)
class LoadSettings:
    """What every worker of a pool shares: the target, the request, the schedule."""

    target: str
    workload: Workload
    api: str
    timeout_s: float
    error_pause_s: float
    warmup_s: float
    duration_s: float
    cooldown_s: float
    connect_timeout_s: float


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    clients: int  # this worker's share of the pool's concurrency
    load: LoadSettings


class Engine(Protocol):
    def start(self, recorder: WindowRecorder) -> None: ...
    def run_due(self) -> None: ...
    def stop_issuing(self) -> None: ...
    def wait_idle(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...


def build_request(workload: Workload) -> pb.PredictRequest:
    request = pb.PredictRequest(
        model_spec=api.model_spec(workload.model, workload.version, workload.signature_name)
    )
    request.inputs[workload.input_name].CopyFrom(tensors.to_tensor_proto(workload.batch))
    return request
