"""The server-kind registry: kinds.yml, read into typed records.

kinds.yml is the one declaration of every kind; Ansible reads the same file (the lab's
group_vars and the model_server role's filters), so a kind's ports, image, metrics and
report colour cannot disagree between the controller and the playbooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

REGISTRY_FILE = Path(__file__).with_name("kinds.yml")

# The lab's runtimes and the APIs a kind may speak (DESIGN.md's tables).
RUNTIMES = ("native", "docker")
APIS = ("tfs-grpc", "tfs-rest", "kserve-grpc", "kserve-rest")
MODEL_TREES = ("ov", "tf")


class RegistryError(ValueError):
    """kinds.yml holds an entry the lab could not use; the message names kind and field."""


@dataclass(frozen=True)
class ServerMetricNames:
    """Where a server kind keeps its request counters and time histograms."""

    path: str  # the metrics route on the REST port
    success: str
    fail: str  # the same name as success when one counter carries a status label
    request_time: str | None  # histogram base name (…_sum, …_count)
    inference_time: str | None
    time_unit_s: float  # the histograms' unit in seconds
    model_label: str
    predict_labels: str  # extra matchers that pick the Predict method on the counters
    # (API, matchers) pairs: the matchers that pick its Predict calls on the request-time
    # histogram (pairs, not a dict: the record stays hashable)
    request_time_labels: tuple[tuple[str, str], ...] = ()
    inference_time_labels: str = ""  # matchers on the inference-time histogram
    # the process exporter's group of the kind's program (roles/process_exporter), and its
    # matchers as (comm|exe|cmdline, patterns) pairs
    process_group: str = ""
    process_match: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def request_time_matchers(self, api: str) -> str:
        """The request-time histogram's matchers for calls over this API ("" if none)."""
        return dict(self.request_time_labels).get(api, "")


@dataclass(frozen=True)
class Ports:
    grpc: int
    rest: int


@dataclass(frozen=True)
class ServerKind:
    name: str
    description: str
    colour: str
    program: str  # the server program it starts (server_commands.py builds its command)
    refserver_runtime: str | None  # refserver's --runtime, for refserver kinds
    runtimes: tuple[str, ...]
    image: str  # its image's name among servelab_image_refs
    image_ref: str | None  # the pinned official image, when it runs one
    model_tree: str
    ports: Ports
    proxy_port: int
    apis: tuple[str, ...]
    in_process_ceiling: bool  # the OpenVINO runtime alone on the server host bounds it
    metrics: ServerMetricNames

    @property
    def is_refserver(self) -> bool:
        """A refserver kind: the native runtime can run it as a process."""
        return self.refserver_runtime is not None


_KIND_FIELDS = {
    "description",
    "colour",
    "program",
    "refserver_runtime",
    "runtimes",
    "image",
    "image_ref",
    "model_tree",
    "ports",
    "proxy_port",
    "apis",
    "in_process_ceiling",
    "metrics",
}
_OPTIONAL_FIELDS = {"refserver_runtime", "image_ref"}


def parse_kind(name: str, entry: dict[str, Any]) -> ServerKind:
    """One kinds.yml entry as a ServerKind; RegistryError names what is wrong."""
    unknown = set(entry) - _KIND_FIELDS
    missing = _KIND_FIELDS - _OPTIONAL_FIELDS - set(entry)
    if unknown or missing:
        raise RegistryError(
            f"server kind {name}: unknown fields {sorted(unknown)}, missing {sorted(missing)}"
        )
    runtimes = tuple(entry["runtimes"])
    apis = tuple(entry["apis"])
    if not runtimes or set(runtimes) - set(RUNTIMES):
        raise RegistryError(f"server kind {name}: runtimes {list(runtimes)}, not among {RUNTIMES}")
    if set(apis) - set(APIS):
        raise RegistryError(f"server kind {name}: apis {list(apis)}, not among {APIS}")
    if entry["model_tree"] not in MODEL_TREES:
        raise RegistryError(f"server kind {name}: model_tree must be one of {MODEL_TREES}")
    # Only refserver runs as a lab process; every other program needs its image.
    if "native" in runtimes and entry.get("refserver_runtime") is None:
        raise RegistryError(f"server kind {name}: the native runtime runs refserver kinds only")
    metrics = dict(entry["metrics"])
    unknown_apis = set(metrics.get("request_time_labels") or {}) - set(APIS)
    if unknown_apis:
        raise RegistryError(
            f"server kind {name}: metrics.request_time_labels: {sorted(unknown_apis)} "
            f"are not APIs ({APIS})"
        )
    metrics["request_time_labels"] = tuple((metrics.get("request_time_labels") or {}).items())
    metrics["process_match"] = tuple(
        (str(key), tuple(str(p) for p in patterns))
        for key, patterns in (metrics.get("process_match") or {}).items()
    )
    try:
        metric_names = ServerMetricNames(**metrics)
    except TypeError as error:
        raise RegistryError(f"server kind {name}: metrics: {error}") from None
    ports = Ports(grpc=int(entry["ports"]["grpc"]), rest=int(entry["ports"]["rest"]))
    return ServerKind(
        name=name,
        description=entry["description"],
        colour=entry["colour"],
        program=entry["program"],
        refserver_runtime=entry.get("refserver_runtime"),
        runtimes=runtimes,
        image=entry["image"],
        image_ref=entry.get("image_ref"),
        model_tree=entry["model_tree"],
        ports=ports,
        proxy_port=int(entry["proxy_port"]),
        apis=apis,
        in_process_ceiling=bool(entry["in_process_ceiling"]),
        metrics=metric_names,
    )


def load_registry(path: Path = REGISTRY_FILE) -> MappingProxyType[str, ServerKind]:
    """Every kind of a registry file, by name, in the file's order."""
    document = yaml.safe_load(path.read_text())
    kinds = {name: parse_kind(name, entry) for name, entry in document["kinds"].items()}
    ports = [(kind.name, port) for kind in kinds.values() for port in _ports_of(kind)]
    seen: dict[int, str] = {}
    for name, port in ports:
        if port in seen and seen[port] != name:
            raise RegistryError(f"server kinds {seen[port]} and {name} both use port {port}")
        seen[port] = name
    return MappingProxyType(kinds)


def _ports_of(kind: ServerKind) -> tuple[int, ...]:
    return (kind.ports.grpc, kind.ports.rest, kind.proxy_port)


KINDS = load_registry()


def server_kind(name: str) -> ServerKind:
    """The registry's kind of that name; KeyError names the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown server kind {name!r}; known: {list(KINDS)}") from None
