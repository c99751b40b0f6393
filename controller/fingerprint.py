"""Whether two runs were measured on machines set up alike, and what differs if not.

A run's fingerprint is, per host, its CPU model, cores, kernel and the tuning that
moves throughput (frequency governor and driver, boost, SMT, transparent huge
pages, NUMA nodes, microcode, kernel command line: controller/provenance.py), and
the content digest of every docker image the run ran. The hostname is not part of
it: the same machine renamed measures the same, and a rebuilt VM keeps its name.
`servelab compare` and the nightly verdict print the differences beside the figures,
so that a gain between runs is not read as the servers' when the machine changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servelab.controller.results import RunResults

# What of a host entry (run.hosts, as facts.yml wrote it) belongs to the fingerprint.
HOST_FIELDS = ("cpu_model", "cores", "kernel")
TUNING_FIELDS = (
    "governor",
    "scaling_driver",
    "boost",
    "smt",
    "thp",
    "thp_defrag",
    "numa_nodes",
    "microcode",
    "cmdline",
)
ABSENT = "(none)"


@dataclass(frozen=True)
class Difference:
    """One thing the two runs' machines do not share."""

    what: str  # "server host lab-a: governor", "image openvino/model_server:2025.2"
    a: str
    b: str

    def __str__(self) -> str:
        return f"{self.what}: {self.a} -> {self.b}"


def _hosts(hosts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host entry under "<platform> host <inventory name>"."""
    named: dict[str, dict[str, Any]] = {}
    for platform, entries in hosts.items():
        for index, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            if isinstance(entry, dict):
                named[f"{platform} host {entry.get('name') or index}"] = entry
    return named


def _text(value: Any) -> str:
    return ABSENT if value is None else str(value)


def fingerprint_differences(
    a_hosts: Mapping[str, Any],
    a_versions: Mapping[str, Any],
    b_hosts: Mapping[str, Any],
    b_versions: Mapping[str, Any],
) -> list[Difference]:
    """What differs between two runs' machines, from their `run.hosts` and `run.versions`.

    A host's tuning is compared only when both runs recorded it: a run measured before
    the fingerprint was kept has none, which is not a difference.
    """
    found: list[Difference] = []
    a_named, b_named = _hosts(a_hosts), _hosts(b_hosts)
    for host in dict.fromkeys([*a_named, *b_named]):
        a, b = a_named.get(host), b_named.get(host)
        if a is None or b is None:
            found.append(
                Difference(host, "in this run" if a else "absent", "in this run" if b else "absent")
            )
            continue
        for name in HOST_FIELDS:
            if _text(a.get(name)) != _text(b.get(name)):
                found.append(Difference(f"{host}: {name}", _text(a.get(name)), _text(b.get(name))))
        a_tuning, b_tuning = a.get("fingerprint"), b.get("fingerprint")
        if not isinstance(a_tuning, dict) or not isinstance(b_tuning, dict):
            continue
        for name in TUNING_FIELDS:
            if _text(a_tuning.get(name)) != _text(b_tuning.get(name)):
                found.append(
                    Difference(
                        f"{host}: {name}", _text(a_tuning.get(name)), _text(b_tuning.get(name))
                    )
                )
    for part in ("images", "image_digests"):
        a_images, b_images = a_versions.get(part) or {}, b_versions.get(part) or {}
        for image in dict.fromkeys([*a_images, *b_images]):
            if _text(a_images.get(image)) != _text(b_images.get(image)):
                label = "image" if part == "images" else "image digest"
                found.append(
                    Difference(
                        f"{label} {image}", _text(a_images.get(image)), _text(b_images.get(image))
                    )
                )
    return found


def unrecorded(results: RunResults) -> bool:
    """Whether the run kept no host tuning (measured before the fingerprint existed)."""
    entries = _hosts(results.run.hosts).values()
    return not any(isinstance(e.get("fingerprint"), dict) for e in entries)


def run_differences(a: RunResults, b: RunResults) -> list[Difference]:
    """What differs between the machines of run A and run B."""
    return fingerprint_differences(a.run.hosts, a.run.versions, b.run.hosts, b.run.versions)


def untuned_note(a: RunResults, b: RunResults, names: tuple[str, str] = ("A", "B")) -> str | None:
    """Why the hosts' tuning could not be compared, or None when both runs recorded it."""
    missing = [name for name, run in zip(names, (a, b), strict=True) if unrecorded(run)]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} recorded no host tuning (measured before it was kept):"
        " governor, boost, SMT, THP, NUMA, microcode and command line not compared"
    )
