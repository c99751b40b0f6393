"""What Prometheus saw during one point's window: HAProxy, the model server, the CPUs.

The scrape jobs are the ones playbooks/client.yml gives the monitoring role:
`haproxy` (HAProxy's exporter; one frontend and backend per server kind, named
after the kind), `node` (a node exporter per host, labelled with its `platform`)
and `model_server` (each kind's own metrics, labelled with its `kind`). The records
returned are results.json's own (controller/results.py).
"""

from __future__ import annotations

from servelab.controller.cpusets import CPUSET_METRIC
from servelab.controller.kinds import server_kind
from servelab.controller.prometheus import (
    PrometheusAPI,
    Window,
    counter_increase,
    window_increase,
    window_rate,
)
from servelab.controller.results import CpuUse, NetworkUse, ProxyMetrics, ServerSideMetrics

# Scrapes are one second apart: the raw samples are fetched with this much on each side.
MARGIN_S = 3.0


# A point whose busier direction used this share of the link was limited by the network.
NEAR_CAPACITY = 0.8


def _selector(name: str, *matchers: str) -> str:
    return f"{name}{{{','.join(m for m in matchers if m)}}}"


def proxy_metrics(api: PrometheusAPI, kind: str, window: Window) -> ProxyMetrics | None:
    job = 'job="haproxy"'
    proxy = f'proxy="{kind}"'
    selector = _selector("haproxy_backend_http_requests_total", job, proxy)
    requests = window_increase(api, selector, window, MARGIN_S)
    if requests is None:
        return None
    rate = window_rate(api, selector, window)
    moved = [
        window_increase(api, _selector(f"haproxy_backend_bytes_{d}_total", job, proxy), window, 0)
        for d in ("in", "out")
    ]
    average = api.instant(
        _selector("haproxy_backend_response_time_average_seconds", job, proxy), window.end_epoch
    )
    return ProxyMetrics(
        requests=round(requests),
        requests_per_s=rate[0] if rate else None,
        rate_span_s=rate[1] if rate else None,
        avg_response_ms=average[0][1] * 1e3 if average else None,
        bytes_per_s=sum(m for m in moved if m is not None) / window.duration_s
        if any(m is not None for m in moved)
        else None,
    )


def server_metrics(
    api: PrometheusAPI, kind: str, model: str, window: Window
) -> ServerSideMetrics | None:
    names = server_kind(kind).metrics
    target = f'job="model_server",kind="{kind}"'
    model_matcher = f'{names.model_label}="{model}"'
    ok = 'status="OK"' if names.success == names.fail else ""
    failed = 'status!="OK"' if names.success == names.fail else ""
    selector = _selector(names.success, target, model_matcher, names.predict_labels, ok)
    success = window_increase(api, selector, window, MARGIN_S)
    if success is None:
        return None
    rate = window_rate(api, selector, window)
    errors = window_increase(
        api,
        _selector(names.fail, target, model_matcher, names.predict_labels, failed),
        window,
        MARGIN_S,
    )

    def mean_ms(histogram: str | None) -> float | None:
        if histogram is None:
            return None
        total = window_increase(
            api, _selector(f"{histogram}_sum", target, model_matcher), window, MARGIN_S
        )
        count = window_increase(
            api, _selector(f"{histogram}_count", target, model_matcher), window, MARGIN_S
        )
        if not total or not count:
            return None
        return total / count * names.time_unit_s * 1e3

    cpu_s = window_increase(api, _selector("process_cpu_seconds_total", target), window, MARGIN_S)
    return ServerSideMetrics(
        requests=round(success),
        requests_per_s=rate[0] if rate else None,
        errors=round(errors or 0.0),
        request_ms_mean=mean_ms(names.request_time),
        inference_ms_mean=mean_ms(names.inference_time),
        process_cpu=cpu_s / window.duration_s if cpu_s is not None else None,
    )


def _platform_cpu(api: PrometheusAPI, platform: str, window: Window) -> tuple[float, int] | None:
    """(busy fraction, cores) of a platform's hosts: 1 - (idle + iowait) / all CPU time."""
    series = api.raw(
        _selector("node_cpu_seconds_total", 'job="node"', f'platform="{platform}"'),
        window.start_epoch - MARGIN_S,
        window.end_epoch + MARGIN_S,
    )
    total = idle = 0.0
    cores: set[tuple[str, str]] = set()
    for labels, samples in series:
        spent = counter_increase(samples, window)
        if spent is None:
            continue
        total += spent
        cores.add((labels.get("instance", ""), labels.get("cpu", "")))
        if labels.get("mode") in ("idle", "iowait"):
            idle += spent
    if total <= 0:
        return None
    return 1.0 - idle / total, len(cores)


def lab_set_use(api: PrometheusAPI, window: Window) -> tuple[float, int] | None:
    """(busy fraction, CPUs) of the lab's CPU set on the busiest client host: the CPUs
    each node exporter publishes as servelab_cpuset_cpu{set="lab"} (the node exporter
    role's textfile), their node_cpu_seconds_total over the window."""
    published = api.instant(
        _selector(CPUSET_METRIC, 'job="node"', 'platform="client"', 'set="lab"'),
        window.end_epoch,
    )
    lab = {(labels.get("instance", ""), labels.get("cpu", "")) for labels, _ in published}
    if not lab:
        return None
    series = api.raw(
        _selector("node_cpu_seconds_total", 'job="node"', 'platform="client"'),
        window.start_epoch - MARGIN_S,
        window.end_epoch + MARGIN_S,
    )
    spent: dict[str, list[float]] = {}  # instance -> [total, idle]
    for labels, samples in series:
        where = (labels.get("instance", ""), labels.get("cpu", ""))
        increase = counter_increase(samples, window) if where in lab else None
        if increase is None:
            continue
        totals = spent.setdefault(where[0], [0.0, 0.0])
        totals[0] += increase
        if labels.get("mode") in ("idle", "iowait"):
            totals[1] += increase
    busy = [
        (1.0 - idle / total, sum(1 for instance, _ in lab if instance == host))
        for host, (total, idle) in spent.items()
        if total > 0
    ]
    return max(busy) if busy else None


def cpu_use(api: PrometheusAPI, window: Window, client_pool: float | None) -> CpuUse:
    server = _platform_cpu(api, "server", window)
    client = _platform_cpu(api, "client", window)
    lab = lab_set_use(api, window)
    # One kernel under both platforms (one machine, or hosts made of namespaces): the
    # node exporters count the same CPUs, so only the pools' own share tells them apart.
    nodenames = {
        platform: {
            labels.get("nodename")
            for labels, _ in api.instant(
                _selector("node_uname_info", 'job="node"', f'platform="{platform}"'),
                window.end_epoch,
            )
        }
        for platform in ("server", "client")
    }
    return CpuUse(
        server=server[0] if server else None,
        client=client[0] if client else None,
        client_pool=client_pool,
        server_cores=server[1] if server else None,
        client_cores=client[1] if client else None,
        shared_host=bool(nodenames["server"] & nodenames["client"]),
        lab_set=lab[0] if lab else None,
        lab_set_cpus=lab[1] if lab else None,
    )


def network_use(
    api: PrometheusAPI, host: str, device: str, link_mbps: float | None, window: Window
) -> NetworkUse:
    rates: dict[str, float | None] = {}
    for direction in ("receive", "transmit"):
        selector = _selector(
            f"node_network_{direction}_bytes_total",
            'job="node"',
            f'host="{host}"',
            f'device="{device}"',
        )
        moved = window_increase(api, selector, window, MARGIN_S)
        rates[direction] = moved / window.duration_s if moved is not None else None
    busier = max((r for r in rates.values() if r is not None), default=None)
    use = busier * 8 / (link_mbps * 1e6) if busier is not None and link_mbps else None
    return NetworkUse(
        host=host,
        device=device,
        receive_bytes_per_s=rates["receive"],
        transmit_bytes_per_s=rates["transmit"],
        link_mbps=link_mbps,
        link_use=use,
        near_capacity=use is not None and use >= NEAR_CAPACITY,
    )
