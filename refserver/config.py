"""What refserver serves: models, their version directories and runtime settings.

A model's base path holds numeric version directories (`<base>/<model>/<version>/`),
the layout OpenVINO Model Server and TensorFlow Serving share. Like both servers'
default version policy, refserver serves the latest (highest) version only.

Everything here is checked before a port is bound, so a bad flag or config file
ends the process with exit code 2 and one line naming what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.controller.kinds import KINDS

RUNTIMES = ("openvino", "tensorflow")
PERFORMANCE_HINTS = ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT")

# The default (gRPC, REST) ports per runtime: those of its refserver kind in the registry.
DEFAULT_PORTS: dict[str, tuple[int, int]] = {
    kind.refserver_runtime: (kind.ports.grpc, kind.ports.rest)
    for kind in KINDS.values()
    if kind.refserver_runtime is not None
}


class ConfigError(ValueError):
    """A flag or config file refserver cannot serve; the message names the flag."""


@dataclass(frozen=True)
class ModelConfig:
    """One entry of the model list: a name, its base path, and how to run it."""

    name: str
    base_path: Path
    version: int  # the served (latest) version
    version_path: Path
    nireq: int = 0  # 0: the device's optimal number of infer requests
    plugin_config: dict[str, Any] = field(default_factory=dict)
    target_device: str = "CPU"

    @property
    def versions(self) -> tuple[int, ...]:
        return (self.version,)


@dataclass(frozen=True)
class ServerConfig:
    runtime: str
    models: tuple[ModelConfig, ...]
    bind_address: str
    grpc_port: int
    rest_port: int  # 0: no REST endpoint (OVMS' meaning of --rest_port 0)
    grpc_workers: int
    performance_hint: str


def numeric_versions(base_path: Path) -> list[int]:
    """The numeric version directories under `base_path`, ascending."""
    return sorted(
        int(entry.name)
        for entry in base_path.iterdir()
        if entry.is_dir() and entry.name.isdigit() and not entry.name.startswith("0")
    )


def model_file(runtime: str, version_path: Path) -> Path:
    """The file a runtime loads from a version directory; ConfigError if there is none."""
    if runtime == "tensorflow":
        saved_model = version_path / "saved_model.pb"
        if not saved_model.is_file():
            raise ConfigError(f"{version_path} holds no saved_model.pb (a TensorFlow SavedModel)")
        return version_path
    candidates = sorted(version_path.glob("*.xml")) or sorted(version_path.glob("*.onnx"))
    if not candidates:
        raise ConfigError(f"{version_path} holds no OpenVINO IR (*.xml) or ONNX (*.onnx) model")
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise ConfigError(f"{version_path} holds more than one model file ({names})")
    return candidates[0]


def resolve_model(
    runtime: str,
    name: str,
    base_path: str | Path,
    *,
    origin: str,
    nireq: int = 0,
    plugin_config: dict[str, Any] | None = None,
    target_device: str = "CPU",
) -> ModelConfig:
    """Check a model's base path and pick its latest version; `origin` names the flag."""
    if not name:
        raise ConfigError(f"{origin}: the model name is empty")
    if "/" in name:
        raise ConfigError(f"{origin}: model name {name!r} contains '/'")
    if nireq < 0:
        raise ConfigError(f"{origin}: nireq {nireq} is negative")
    base = Path(base_path).expanduser().absolute()
    if not base.is_dir():
        raise ConfigError(f"{origin}: model path {base} does not exist or is not a directory")
    versions = numeric_versions(base)
    if not versions:
        raise ConfigError(
            f"{origin}: model path {base} has no numeric version directory "
            f"(expected {base}/<version>/, e.g. {base}/1/)"
        )
    version = versions[-1]
    version_path = base / str(version)
    try:
        model_file(runtime, version_path)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return ModelConfig(
        name=name,
        base_path=base,
        version=version,
        version_path=version_path,
        nireq=nireq,
        plugin_config=dict(plugin_config or {}),
        target_device=target_device,
    )


def parse_plugin_config(text: str, origin: str = "--plugin_config") -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: expected a JSON object, got {type(value).__name__}")
    return value


def load_config_file(
    runtime: str, path: str | Path, default_nireq: int, default_plugin_config: dict[str, Any]
) -> tuple[ModelConfig, ...]:
    """Read an OVMS-style `{"model_config_list": [{"config": {...}}]}` file.

    Keys per model: name, base_path (relative paths are taken from the file's
    directory), and optionally nireq, plugin_config (an object or a JSON string,
    as OVMS accepts both) and target_device.
    """
    origin = f"--config_path {path}"
    file = Path(path).expanduser()
    try:
        document = json.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    entries = document.get("model_config_list") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{origin}: needs a non-empty 'model_config_list' array")
    models: list[ModelConfig] = []
    for index, entry in enumerate(entries):
        where = f"{origin}: model_config_list[{index}]"
        config = entry.get("config") if isinstance(entry, dict) else None
        if not isinstance(config, dict):
            raise ConfigError(f"{where} needs a 'config' object")
        unknown = set(config) - {"name", "base_path", "nireq", "plugin_config", "target_device"}
        if unknown:
            raise ConfigError(f"{where}.config has unsupported key(s) {sorted(unknown)}")
        name, base_path = config.get("name"), config.get("base_path")
        if not isinstance(name, str) or not isinstance(base_path, str):
            raise ConfigError(f"{where}.config needs string 'name' and 'base_path'")
        nireq = config.get("nireq", default_nireq)
        if not isinstance(nireq, int) or isinstance(nireq, bool):
            raise ConfigError(f"{where}.config.nireq must be an integer")
        plugin_config = config.get("plugin_config", default_plugin_config)
        if isinstance(plugin_config, str):
            plugin_config = parse_plugin_config(plugin_config, f"{where}.config.plugin_config")
        if not isinstance(plugin_config, dict):
            raise ConfigError(f"{where}.config.plugin_config must be an object")
        target_device = config.get("target_device", "CPU")
        if not isinstance(target_device, str) or not target_device:
            raise ConfigError(f"{where}.config.target_device must be a device name")
        base = Path(base_path).expanduser()
        if not base.is_absolute():
            base = file.parent / base
        models.append(
            resolve_model(
                runtime,
                name,
                base,
                origin=f"{where} ({name!r})",
                nireq=nireq,
                plugin_config=plugin_config,
                target_device=target_device,
            )
        )
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{origin}: model name(s) {duplicates} appear more than once")
    return tuple(models)
