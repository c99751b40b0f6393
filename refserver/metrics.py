"""refserver's Prometheus metrics, served on the REST port at /metrics.

    refserver_requests_success_total{model, version, method}
    refserver_requests_fail_total{model, version, method, code}
    refserver_request_time_seconds{model}     the whole Predict handler
    refserver_inference_time_seconds{model}   the runtime alone

`method` is the gRPC method (Predict, GetModelMetadata, GetModelStatus) and
`code` the gRPC status name of the failure (INVALID_ARGUMENT, NOT_FOUND, ...).
The process's own `process_cpu_seconds_total` and memory come along, so that the
lab can tell the server's CPU from the clients' when both share a host.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

# From a tiny model's sub-millisecond call to a batch-32 ResNet-152 on a small CPU.
TIME_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)


class ServerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only double a scrape's size
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.success = Counter(
            "refserver_requests_success",
            "Requests answered with OK.",
            ("model", "version", "method"),
            registry=self.registry,
        )
        self.fail = Counter(
            "refserver_requests_fail",
            "Requests answered with an error status.",
            ("model", "version", "method", "code"),
            registry=self.registry,
        )
        self.request_time = Histogram(
            "refserver_request_time_seconds",
            "Time in the Predict handler: decode, validate, infer, encode.",
            ("model",),
            buckets=TIME_BUCKETS_S,
            registry=self.registry,
        )
        self.inference_time = Histogram(
            "refserver_inference_time_seconds",
            "Time the runtime took for one Predict's inference.",
            ("model",),
            buckets=TIME_BUCKETS_S,
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], object] = {}

    def predict_ok(self, model: str, version: str, request_s: float, inference_s: float) -> None:
        children = self._children.get(("predict", model, version))
        if children is None:
            children = (
                self.success.labels(model, version, "Predict"),
                self.request_time.labels(model),
                self.inference_time.labels(model),
            )
            self._children[("predict", model, version)] = children
        success, request_time, inference_time = children
        success.inc()
        request_time.observe(request_s)
        inference_time.observe(inference_s)

    def ok(self, model: str, version: str, method: str) -> None:
        self.success.labels(model, version, method).inc()

    def failed(self, model: str, version: str, method: str, code: str) -> None:
        self.fail.labels(model, version, method, code).inc()
