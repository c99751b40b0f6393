"""CPU sets: the model server's cores and the lab's, as cpuset strings ("0", "2-7,12").

Each lab host has two sets: `servelab_server_cpus` (the model server, and the in-process
ceiling measured for it) and `servelab_lab_cpus` (HAProxy, Prometheus, the exporters, the
client pools, the controller). This module parses and prints them, splits a host's CPUs
into the default pair, and says what is wrong with a pair a host was given. It needs
nothing beyond the standard library: Ansible's filters and the server platform read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class CpusetError(ValueError):
    """A cpuset string that does not parse; the message quotes it."""


def parse_cpuset(text: str) -> frozenset[int]:
    """The CPUs of a cpuset string ("0-3,8"); empty text is the empty set."""
    cpus: set[int] = set()
    for part in "".join(str(text).split()).split(","):
        if not part:
            continue
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise CpusetError(f"{text!r} is not a cpuset (CPU numbers and ranges: 0-3,8)")
        low, high = int(first), int(last or first)
        if high < low:
            raise CpusetError(f"{text!r}: the range {part} runs backwards")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpuset(cpus: Iterable[int]) -> str:
    """The shortest cpuset string of these CPUs: runs become ranges ("0-3,8")."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = previous = None
    for cpu in [*ordered, None]:
        if previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(parts)


@dataclass(frozen=True)
class CpuSplit:
    """The default sets of one machine that runs both the model server and the lab."""

    server: str
    lab: str
    overlap: bool  # a one-CPU machine: both get its only CPU


def lab_share(count: int) -> int:
    """How many of a machine's CPUs the lab keeps by default: a quarter, at least one."""
    return max(1, count // 4)


def default_split(host_cpus: Iterable[int]) -> CpuSplit:
    """The lab gets the first max(1, n/4) CPUs, the server the rest; one CPU is shared."""
    ordered = sorted(set(host_cpus))
    if not ordered:
        raise CpusetError("the host has no CPU to split")
    if len(ordered) == 1:
        only = format_cpuset(ordered)
        return CpuSplit(server=only, lab=only, overlap=True)
    kept = lab_share(len(ordered))
    return CpuSplit(
        server=format_cpuset(ordered[kept:]), lab=format_cpuset(ordered[:kept]), overlap=False
    )


def host_cpus(online: str, cgroup: str = "") -> frozenset[int]:
    """The CPUs a host lets the lab use: the online ones (/sys/devices/system/cpu/online),
    within its cgroup's cpuset.cpus.effective when it has one (a container's limit)."""
    cpus = parse_cpuset(online)
    limit = parse_cpuset(cgroup) if cgroup.strip() else frozenset()
    return cpus & limit if limit else cpus


def cpuset_problems(
    host: str,
    server_cpus: str,
    lab_cpus: str,
    available: Iterable[int],
    *,
    may_overlap: bool = False,
) -> list[str]:
    """What is wrong with one host's pair of sets, each message naming the variable, the
    host and what would be right; empty when nothing is. An empty set means unpinned."""
    have = frozenset(available)
    have_text = format_cpuset(have)
    suggestion = default_split(have) if have else None
    problems: list[str] = []
    parsed: dict[str, frozenset[int]] = {}
    sets = (
        ("servelab_server_cpus", server_cpus, "server"),
        ("servelab_lab_cpus", lab_cpus, "lab"),
    )
    for name, text, side in sets:
        try:
            parsed[name] = parse_cpuset(text)
        except CpusetError as error:
            problems.append(f"{name} on {host}: {error}")
            continue
        missing = parsed[name] - have
        if missing:
            right = getattr(suggestion, side, have_text)
            problems.append(
                f"{name} {text!r} on {host} names CPU(s) {format_cpuset(missing)}, which the "
                f"host does not have (it has {have_text}); give a set within it, e.g. {right!r}"
            )
    shared = parsed.get("servelab_server_cpus", frozenset()) & parsed.get(
        "servelab_lab_cpus", frozenset()
    )
    if shared and not may_overlap:
        right = (
            f" (e.g. server {suggestion.server!r}, lab {suggestion.lab!r})" if suggestion else ""
        )
        problems.append(
            f"servelab_server_cpus {server_cpus!r} and servelab_lab_cpus {lab_cpus!r} on {host} "
            f"share CPU(s) {format_cpuset(shared)}: the lab would take the server's time; give "
            f"them disjoint sets{right}, or set servelab_cpus_may_overlap: true and the report "
            "says so"
        )
    return problems


def taskset_prefix(cpus: str) -> list[str]:
    """The command prefix that starts a program inside `cpus` (nothing when unpinned);
    the affinity is inherited by every thread and child the program makes."""
    return ["taskset", "--cpu-list", cpus] if cpus else []


CPUSET_METRIC = "servelab_cpuset_cpu"


def cpuset_metrics(sets: dict[str, str]) -> str:
    """The node exporter's textfile of a host's sets: one series per CPU of each set,
    {set="lab", cpu="0"} 1, in node_cpu_seconds_total's own cpu label."""
    lines = [
        f"# HELP {CPUSET_METRIC} A CPU of one of the lab's CPU sets on this host.",
        f"# TYPE {CPUSET_METRIC} gauge",
    ]
    for name, text in sorted(sets.items()):
        for cpu in sorted(parse_cpuset(text or "")):
            lines.append(f'{CPUSET_METRIC}{{set="{name}",cpu="{cpu}"}} 1')
    return "\n".join(lines) + "\n"
