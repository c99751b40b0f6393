"""The lab's own share: the busy fraction of the lab's CPU set per client host, from the
CPUs each node exporter publishes (servelab_cpuset_cpu) and its per-CPU counters; a
saturated lab set makes the point invalid."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servelab.controller.cpusets import cpuset_metrics
from servelab.controller.metrics import lab_set_use
from servelab.controller.plan import DEFAULT_VALIDITY, Validity
from servelab.controller.plan import Window as PlanWindow
from servelab.controller.prometheus import Window
from servelab.controller.validity import judge

WINDOW = Window(100.0, 110.0)


class PerCpuPrometheus:
    """node_cpu_seconds_total per (instance, cpu, mode), rising at a steady rate, and the
    lab CPUs each instance published."""

    def __init__(self, rates: dict[tuple[str, str, str], float], lab: dict[str, list[int]]):
        self.rates = rates
        self.lab = lab

    def instant(self, selector: str, at: float) -> list:
        assert 'set="lab"' in selector and 'platform="client"' in selector
        return [
            ({"instance": host, "cpu": str(cpu), "set": "lab"}, 1.0)
            for host, cpus in self.lab.items()
            for cpu in cpus
        ]

    def raw(self, selector: str, start: float, end: float) -> list:
        assert selector.startswith("node_cpu_seconds_total")
        times = [start + i for i in range(int(end - start) + 1)]
        return [
            ({"instance": host, "cpu": cpu, "mode": mode}, [(t, rate * t) for t in times])
            for (host, cpu, mode), rate in self.rates.items()
        ]


def _busy(host: str, cpu: str, share: float) -> dict[tuple[str, str, str], float]:
    return {(host, cpu, "user"): share, (host, cpu, "idle"): 1.0 - share}


def test_the_share_counts_only_the_lab_sets_cpus():
    # CPU 0 is the lab's, 30% busy; CPU 1 is the server's, fully busy
    api = PerCpuPrometheus({**_busy("a:1", "0", 0.3), **_busy("a:1", "1", 1.0)}, {"a:1": [0]})
    share, cpus = lab_set_use(api, WINDOW)
    assert share == pytest.approx(0.3) and cpus == 1


def test_the_busiest_client_host_speaks_for_the_lab():
    rates = {**_busy("a:1", "0", 0.2), **_busy("b:1", "0", 0.9), **_busy("b:1", "1", 0.7)}
    share, cpus = lab_set_use(PerCpuPrometheus(rates, {"a:1": [0], "b:1": [0, 1]}), WINDOW)
    assert share == pytest.approx(0.8) and cpus == 2


def test_no_published_set_gives_no_share():
    assert lab_set_use(PerCpuPrometheus(_busy("a:1", "0", 1.0), {}), WINDOW) is None


def test_the_textfile_names_every_cpu_of_each_set():
    text = cpuset_metrics({"server": "1-2", "lab": "0", "none": ""})
    assert 'servelab_cpuset_cpu{set="lab",cpu="0"} 1' in text
    assert 'servelab_cpuset_cpu{set="server",cpu="2"} 1' in text
    assert text.count("servelab_cpuset_cpu{") == 3


def _judge(lab_set: float | None, bounds: Validity = DEFAULT_VALIDITY) -> list[str]:
    return judge(
        bounds=bounds, window=PlanWindow(0, 10, 0), measured_window_s=10.0, requests=1000,
        errors={}, verify_failures=0, concurrency=4, proxy_rate=(100.0, 8.0), client_cpu=0.2,
        client_cpu_source="node exporter", stable=None, lab_set=lab_set,
    )  # fmt: skip


def test_a_saturated_lab_set_makes_the_point_invalid():
    assert DEFAULT_VALIDITY.max_lab_cpu == 0.95
    assert _judge(0.95) == [] and _judge(None) == []
    [reason] = _judge(0.99)
    assert reason == (
        "the lab's CPU set was 99% busy, above the bound 95%: the lab's own processes, not the "
        "server, were the limit"
    )
    # a plan that checks the lab, not a server, may let the lab set fill up
    assert _judge(1.0, replace(DEFAULT_VALIDITY, max_lab_cpu=1.0)) == []
