"""The lab as the run loop sees it: a small protocol, and the real lab behind it.

The loop asks the lab to serve a kind, to load a point, whether a kind still serves,
what Prometheus saw over a window, and to tear down. `AnsibleLab` answers with the
phase playbooks (playbooks/phases/*.yml through ansible-runner, controller/phases.py)
and the lab's Prometheus; tests hand the loop a fake with the same methods.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from servelab.controller import clocks
from servelab.controller.clocks import ClockOffset
from servelab.controller.metrics import (
    cpu_frequency,
    cpu_use,
    network_use,
    program_use,
    proxy_metrics,
    server_metrics,
)
from servelab.controller.phases import PhaseFailed, run_phase
from servelab.controller.plan import Point
from servelab.controller.prometheus import (
    PrometheusAPI,
    PrometheusError,
    ScrapeCoverage,
    Window,
    scrape_coverage,
)
from servelab.controller.provenance import read_facts
from servelab.controller.results import (
    CpuUse,
    HostFrequency,
    NetworkUse,
    ProgramUse,
    ProxyMetrics,
    ServerSideMetrics,
    client_pool_cpu,
)

FACTS_FILE = "facts.json"
# How long Prometheus may take to see a freshly started server's metrics.
TARGET_TIMEOUT_S = 20.0
# How long to wait for each job's first scrape after a window (interpolation needs it).
SCRAPE_TIMEOUT_S = 15.0
# That scrape must come this long after the window's end: one scrape interval and some.
AFTER_WINDOW_S = 1.2
# What serving one kind does to the plan's other kinds: "stopped" stops them; "idle"
# leaves those already up running without load, so that switching back needs no serve
# phase. Measured on the 2-core lab host, an idle refserver of the TensorFlow runtime
# cost the OpenVINO one 7.4% of its throughput (95% interval -65% to +39%, 5 and 6
# points; docs/plans.md): over the 1% the default allows, so serving one kind stops
# the others.
SERVE_OTHERS = ("stopped", "idle")
DEFAULT_SERVE_OTHERS = "stopped"


@dataclass(frozen=True)
class ServerLink:
    """The server host's lab interface, as provenance (phases/facts.yml) found it."""

    host: str
    device: str
    speed_mbps: float | None


def server_link(hosts: dict[str, Any]) -> ServerLink | None:
    """The first server host's link from the run's provenance; None when it is unknown."""
    servers = (hosts or {}).get("server") or [{}]
    link = servers[0].get("network") or {}
    if not link.get("device"):
        return None
    speed = link.get("speed_mbps")
    speed = float(speed) if str(speed).isdigit() else None  # facts may carry digits as text
    return ServerLink(servers[0]["name"], link["device"], speed)


@dataclass
class Observation:
    """What Prometheus saw over one point's window; None where it could not say."""

    proxy: ProxyMetrics | None = None
    server: ServerSideMetrics | None = None
    cpu: CpuUse | None = None
    network: NetworkUse | None = None
    coverage: list[ScrapeCoverage] = field(default_factory=list)
    programs: list[ProgramUse] | None = None  # each lab program's CPU and memory
    error: str | None = None  # Prometheus failed part-way: what it said
    frequency: list[HostFrequency] = field(default_factory=list)  # each host's CPU frequency


class Lab(Protocol):
    """The lab's phases, as the run loop uses them."""

    # one of SERVE_OTHERS: whether serve() stops the other kinds or leaves them idle
    serve_others: str

    def read_facts(self, dest: Path) -> dict[str, Any]:
        """The hosts' facts and versions (provenance); PhaseFailed, OSError or ValueError."""
        ...

    def clock_offsets(self) -> list[ClockOffset] | None:
        """Every clock against the monitoring host's; None without Prometheus."""
        ...

    def serve(self, kind: str, ceiling_dest: Path) -> None:
        """The kind up with the plan's models, the others stopped or idle; PhaseFailed."""
        ...

    def still_serving(self, kind: str, since_epoch: float) -> bool:
        """Whether the kind's server answered a scrape after `since_epoch`."""
        ...

    def load(self, point: Point, point_dir: Path, window_s: float | None = None) -> None:
        """The client pools run the point over a window of window_s (the plan's duration_s
        when None); their summaries land in point_dir; PhaseFailed."""
        ...

    def observe(
        self,
        point: Point,
        window: Window,
        summaries: dict[str, dict[str, Any]],
        link: ServerLink | None,
    ) -> Observation | None:
        """What Prometheus saw over the window; None when the lab has no Prometheus."""
        ...

    def teardown(self) -> None:
        """Every lab process stopped; PhaseFailed."""
        ...

    def ensure_healthy(self) -> list[str]:
        """The lab's own daemons (Prometheus, HAProxy, the node and process exporters)
        checked, and any that died brought back; what was brought back (empty when all
        were up); PhaseFailed when they could not be."""
        ...


class AnsibleLab:
    """The real lab: phase playbooks through ansible-runner, Prometheus over HTTP."""

    def __init__(
        self,
        *,
        inventory: Path,
        extravars: dict[str, Any],
        plan_file: Path,
        prometheus: PrometheusAPI | None,
    ) -> None:
        self.inventory = inventory
        self.extravars = extravars
        self.plan_file = plan_file
        self.prometheus = prometheus
        self.serve_others = str(extravars.get("servelab_serve_others", DEFAULT_SERVE_OTHERS))
        if self.serve_others not in SERVE_OTHERS:
            raise ValueError(
                f"servelab_serve_others is {self.serve_others!r}; use one of {list(SERVE_OTHERS)}"
            )

    def _phase(self, playbook: str, extravars: dict[str, Any]) -> None:
        run_phase(
            playbook,
            {**self.extravars, "servelab_plan_file": str(self.plan_file), **extravars},
            inventory=self.inventory,
        )

    def read_facts(self, dest: Path) -> dict[str, Any]:
        self._phase("playbooks/phases/facts.yml", {"servelab_facts_dest": str(dest)})
        return read_facts(dest / FACTS_FILE)

    def clock_offsets(self) -> list[ClockOffset] | None:
        return None if self.prometheus is None else clocks.measure(self.prometheus)

    def serve(self, kind: str, ceiling_dest: Path) -> None:
        self._phase(
            "playbooks/phases/serve.yml",
            {
                "servelab_serve_kind": kind,
                "servelab_ceiling_dest": str(ceiling_dest),
                "servelab_serve_others": self.serve_others,
            },
        )
        self._await_server_metrics(kind)

    def _await_server_metrics(self, kind: str) -> None:
        """Wait until Prometheus scrapes the freshly served kind, so its counters cover the
        window; a target that stays down costs the server-side numbers, not the point."""
        if self.prometheus is None:
            return
        deadline = time.monotonic() + TARGET_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.prometheus.target_health("model_server", {"kind": kind}) == "up":
                    return
            except PrometheusError:
                pass
            time.sleep(0.5)

    def still_serving(self, kind: str, since_epoch: float) -> bool:
        if self.prometheus is None:
            return False
        try:
            return self.prometheus.up_since("model_server", {"kind": kind}, since_epoch)
        except PrometheusError:
            return False

    def load(self, point: Point, point_dir: Path, window_s: float | None = None) -> None:
        window = {} if window_s is None else {"servelab_window_s": window_s}
        self._phase(
            "playbooks/phases/load.yml",
            {
                "servelab_point": {**asdict(point), "slug": point.slug},
                "servelab_point_dir": str(point_dir),
                **window,
            },
        )

    def observe(
        self,
        point: Point,
        window: Window,
        summaries: dict[str, dict[str, Any]],
        link: ServerLink | None,
    ) -> Observation | None:
        api = self.prometheus
        if api is None:
            return None
        seen = Observation()
        server_target = {"kind": point.server}
        try:
            # interpolation, and the coverage of the window's end, need a scrape after it
            for job in ("haproxy", "node"):
                api.wait_for_scrapes(job, window.end_epoch + AFTER_WINDOW_S, SCRAPE_TIMEOUT_S)
            # a lab without process exporters (an older inventory) costs the programs' figures
            if api.target("process", {}) is not None:
                api.wait_for_scrapes("process", window.end_epoch + AFTER_WINDOW_S, SCRAPE_TIMEOUT_S)
            if api.target("model_server", server_target) is not None:
                api.wait_for_scrapes(
                    "model_server",
                    window.end_epoch + AFTER_WINDOW_S,
                    SCRAPE_TIMEOUT_S,
                    server_target,
                )
            seen.proxy = proxy_metrics(api, point.server, window)
            seen.programs = program_use(api, window) or None
            seen.server = server_metrics(api, point.server, point.model, window, seen.programs)
            seen.cpu = cpu_use(api, window, client_pool_cpu(summaries), seen.programs)
            if link is not None:
                seen.network = network_use(api, link.host, link.device, link.speed_mbps, window)
            seen.coverage = window_coverage(api, point.server, window)
            seen.frequency = cpu_frequency(api, window)
        except PrometheusError as exc:
            seen.error = str(exc)
        return seen

    def teardown(self) -> None:
        self._phase("playbooks/teardown.yml", {})

    def ensure_healthy(self) -> list[str]:
        api = self.prometheus
        if api is None:
            return []
        dead = lab_daemons_down(api)
        if not dead:
            return []
        self._phase("playbooks/phases/lab_health.yml", {})
        # back means scraped again: Prometheus ready and every lab job's targets up
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        still = dead
        while time.monotonic() < deadline:
            still = lab_daemons_down(api)
            if not still:
                return dead
            time.sleep(0.5)
        raise PhaseFailed(
            f"{', '.join(still)} still down {HEALTH_TIMEOUT_S:g} s after "
            "playbooks/phases/lab_health.yml brought the lab's daemons back"
        )


# The lab's own scrape jobs, each its daemon's health (the model server's is the point's).
LAB_JOBS = {"haproxy": "HAProxy", "node": "a node exporter", "process": "a process exporter"}
# How long restarted daemons may take to be scraped again.
HEALTH_TIMEOUT_S = 30.0


def lab_daemons_down(api: PrometheusAPI) -> list[str]:
    """The lab's daemons that do not answer: Prometheus itself (not ready), or a target of
    a lab job whose last scrape failed."""
    if not api.ready():
        return ["Prometheus"]
    try:
        targets = api.targets()
    except PrometheusError:
        return ["Prometheus"]
    down = []
    for target in targets:
        labels = target.get("labels") or {}
        job = labels.get("job", "")
        if job in LAB_JOBS and target.get("health") == "down":
            where = labels.get("host") or labels.get("instance", "")
            down.append(f"{LAB_JOBS[job]} ({job} on {where})")
    return sorted(set(down))


def window_coverage(api: PrometheusAPI, kind: str, window: Window) -> list[ScrapeCoverage]:
    """The coverage of HAProxy's, the node exporters' and the kind's own scrapes.

    HAProxy and the node exporters must be there: a job without a target is a job
    not scraped at all. The model server's metrics are judged only when they reached
    Prometheus at all in the window: a kind whose metrics never come costs the
    server-side numbers, not the point (as before the coverage rule).
    """
    found = []
    for job in ("haproxy", "node"):
        covered = scrape_coverage(api, job, {}, window)
        found += covered or [ScrapeCoverage(job, "no target", 0.0, window.duration_s)]
    served = scrape_coverage(api, "model_server", {"kind": kind}, window)
    return found + [c for c in served if c.covered_s]
