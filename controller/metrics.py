"""What Prometheus saw during one point's window: HAProxy, the model server, the CPUs.

The scrape jobs are the ones playbooks/client.yml gives the monitoring role:
`haproxy` (HAProxy's exporter; one frontend and backend per server kind, named
after the kind), `node` (a node exporter per host, labelled with its `platform`),
`process` (a process exporter per host, its groups named after the lab's programs,
labelled like `node`) and `model_server` (each kind's own metrics, labelled with
its `kind`). The records
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
from servelab.controller.results import (
    CpuUse,
    HostFrequency,
    NetworkUse,
    ProgramUse,
    ProxyMetrics,
    ServerSideMetrics,
)

# Scrapes are one second apart: the raw samples are fetched with this much on each side.
MARGIN_S = 3.0


# A point whose busier direction used this share of the link was limited by the network.
NEAR_CAPACITY = 0.8

# The API the client pools speak: it picks the server's request-time series.
POOL_API = "tfs-grpc"

# The process exporter's group of the client pools (roles/process_exporter).
POOL_PROGRAM = "servelab-load"


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
    api: PrometheusAPI,
    kind: str,
    model: str,
    window: Window,
    programs: list[ProgramUse] | None = None,
    client_api: str = POOL_API,
) -> ServerSideMetrics | None:
    """The kind's own Predict counters and time histograms over the window; the server
    program's CPU from the process exporter's figures (`programs`), when there are any."""
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

    def mean_ms(histogram: str | None, matchers: str) -> tuple[float | None, int | None]:
        """(mean in ms, calls it stands on) of a histogram over the window."""
        if histogram is None:
            return None, None
        parts = (target, model_matcher, matchers)
        total = window_increase(api, _selector(f"{histogram}_sum", *parts), window, MARGIN_S)
        count = window_increase(api, _selector(f"{histogram}_count", *parts), window, MARGIN_S)
        if not total or not count:
            return None, round(count) if count is not None else None
        return total / count * names.time_unit_s * 1e3, round(count)

    request_ms, request_n = mean_ms(names.request_time, names.request_time_matchers(client_api))
    inference_ms, inference_n = mean_ms(names.inference_time, names.inference_time_labels)
    own = [
        p for p in programs or [] if p.program == names.process_group and "server" in p.platforms
    ]
    cores = [p.cpu_cores for p in own if p.cpu_cores is not None]
    return ServerSideMetrics(
        requests=round(success),
        requests_per_s=rate[0] if rate else None,
        errors=round(errors or 0.0),
        request_ms_mean=request_ms,
        inference_ms_mean=inference_ms,
        process_cpu=sum(cores) if cores else None,
        request_samples=request_n,
        inference_samples=inference_n,
    )


def program_use(api: PrometheusAPI, window: Window) -> list[ProgramUse]:
    """Each lab program's CPU (cores) and peak resident memory over the window, per
    process exporter; a program with no process inside the window is left out.

    On one machine both platforms' targets are one exporter (one address): its figures
    are listed once, under both platforms."""
    platforms: dict[str, set[str]] = {}
    for labels, _ in api.instant(_selector("up", 'job="process"'), window.end_epoch):
        platforms.setdefault(labels.get("instance", ""), set()).add(labels.get("platform", ""))
    start, end = window.start_epoch - MARGIN_S, window.end_epoch + MARGIN_S
    # The same series comes once per target of its exporter: keep the first of each.
    by_mode: dict[tuple[str, str, str], float] = {}
    for labels, samples in api.raw(
        _selector("namedprocess_namegroup_cpu_seconds_total", 'job="process"'), start, end
    ):
        spent = counter_increase(samples, window)
        if spent is not None:
            mode = (labels.get("instance", ""), labels.get("groupname", ""), labels.get("mode", ""))
            by_mode.setdefault(mode, spent)
    cpu: dict[tuple[str, str], float] = {}
    for (instance, program, _), spent in by_mode.items():
        cpu[(instance, program)] = cpu.get((instance, program), 0.0) + spent
    peak: dict[tuple[str, str], tuple[float, int]] = {}
    for labels, samples in api.raw(
        _selector("namedprocess_namegroup_memory_bytes", 'job="process"', 'memtype="resident"'),
        start,
        end,
    ):
        inside = [v for t, v in samples if window.start_epoch <= t <= window.end_epoch]
        key = (labels.get("instance", ""), labels.get("groupname", ""))
        if inside and key not in peak:
            peak[key] = (max(inside), len(inside))
    processes: dict[tuple[str, str], int] = {}
    for labels, samples in api.raw(
        _selector("namedprocess_namegroup_num_procs", 'job="process"'), start, end
    ):
        inside = [v for t, v in samples if window.start_epoch <= t <= window.end_epoch]
        key = (labels.get("instance", ""), labels.get("groupname", ""))
        if inside:
            processes[key] = max(processes.get(key, 0), round(max(inside)))
    found = []
    for key in sorted(k for k, n in processes.items() if n > 0):
        instance, program = key
        spent = cpu.get(key)
        rss, samples = peak.get(key, (None, 0))
        found.append(
            ProgramUse(
                program=program,
                host=instance,
                platforms=sorted(p for p in platforms.get(instance, set()) if p),
                cpu_cores=spent / window.duration_s if spent is not None else None,
                peak_rss_bytes=rss,
                samples=samples,
                processes=processes[key],
            )
        )
    return found


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


def cpu_use(
    api: PrometheusAPI,
    window: Window,
    client_pool: float | None,
    programs: list[ProgramUse] | None = None,
) -> CpuUse:
    """Both platforms' CPU; the pools' own share from the process exporter (their
    group's cores over the client platform's cores) when it saw them, else the pools'
    own report (`client_pool`)."""
    server = _platform_cpu(api, "server", window)
    client = _platform_cpu(api, "client", window)
    pools = [
        p.cpu_cores
        for p in programs or []
        if p.program == POOL_PROGRAM and "client" in p.platforms and p.cpu_cores is not None
    ]
    source = "pools" if client_pool is not None else None
    if pools and client and client[1]:
        client_pool, source = sum(pools) / client[1], "process exporter"
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
        client_pool_source=source,
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


# The node exporter's cpufreq collector: each core's current frequency (the kernel's
# scaling_cur_freq) and the thermal throttling counters, where the host exposes them.
FREQUENCY_METRIC = "node_cpu_scaling_frequency_hertz"
THROTTLE_METRICS = ("node_cpu_core_throttles_total", "node_cpu_package_throttles_total")


def cpu_frequency(api: PrometheusAPI, window: Window) -> list[HostFrequency]:
    """Each node exporter host's CPU frequency and throttling inside the window.

    The host's frequency at a scrape is the mean over its cores; low and high are
    the extremes of that mean over the window's scrapes. A host whose exporter shows
    no frequency (most VMs have no cpufreq) is listed as not exposed.
    """
    exporters = api.instant(_selector("node_uname_info", 'job="node"'), window.end_epoch)
    hosts = sorted({labels.get("host", labels.get("instance", "?")) for labels, _ in exporters})
    found = []
    for host in hosts:
        matchers = ('job="node"', f'host="{host}"')
        per_scrape: dict[float, list[float]] = {}
        for _, samples in api.raw(
            _selector(FREQUENCY_METRIC, *matchers), window.start_epoch, window.end_epoch
        ):
            for at, hertz in samples:
                per_scrape.setdefault(round(at, 1), []).append(hertz)
        means = [sum(v) / len(v) for v in per_scrape.values() if v]
        throttles: float | None = None
        for metric in THROTTLE_METRICS:
            series = api.raw(
                _selector(metric, *matchers), window.start_epoch - MARGIN_S, window.end_epoch
            )
            for _, samples in series:
                grew = counter_increase(samples, window)
                if grew is not None:
                    throttles = (throttles or 0.0) + grew
        low, high = (min(means), max(means)) if means else (None, None)
        found.append(
            HostFrequency(
                host=host,
                exposed=bool(means),
                low_hz=low,
                high_hz=high,
                change=(high - low) / high if low is not None and high else None,
                throttles=round(throttles) if throttles is not None else None,
            )
        )
    return found
