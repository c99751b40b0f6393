"""The docker runtime's container of each server kind (command, environment, mounts,
published ports, healthcheck), and the config files each kind reads on either runtime.

The model_server role calls these through its filter plugin
(roles/model_server/filter_plugins/model_server.py); the tests call them directly. Each
program's flags are the ones its version documents: OpenVINO Model Server 2025.2 takes
`--flag value` (bool options are switches), TF Serving 2.18.0's tensorflow_model_server
takes `--flag=value`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servelab.controller.cpusets import parse_cpuset
from servelab.controller.kinds import ServerKind, server_kind

# Inside the container the repository and the configs are mounted read-only here, so the
# configs name models by their path inside the container.
CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config"

# TF Serving's config files (protobuf text) in the state directory, mounted at CONTAINER_CONFIG.
TFS_MODELS_CONFIG = "tfserving-models.config"
TFS_MONITORING_CONFIG = "tfserving-monitoring.config"
TFS_BATCHING_CONFIG = "tfserving-batching.config"


@dataclass(frozen=True)
class ServerSettings:
    """What the role knows of one server it starts (its model_server_* variables)."""

    kind: str
    models: tuple[str, ...]
    grpc_port: int
    rest_port: int
    repository: str  # the model repository on the host
    state_dir: str  # the configs' directory on the host
    bind_address: str  # the host address the ports are published on
    nireq: int = 0  # OpenVINO infer requests per model; 0 lets the runtime choose
    plugin_config: Mapping[str, Any] = field(default_factory=dict)
    target_device: str = "CPU"
    grpc_workers: int = 8  # refserver's gRPC handler threads
    batching: bool = False  # TF Serving's server-side batching
    batching_parameters: Mapping[str, int] = field(default_factory=dict)  # by field name
    start_timeout_s: int = 300
    runtime: str = "docker"  # or native: a refserver process reads the host's paths
    cpuset: str = ""  # CPUs the container may run on (docker's --cpuset-cpus); empty: all
    render_gid: int | None = None  # the host's render group (its /dev/dri/renderD* nodes' gid)

    @classmethod
    def from_role(cls, variables: Mapping[str, Any]) -> ServerSettings:
        """From the role's variables, whose numbers and flags may arrive as text."""
        return cls(
            kind=str(variables["kind"]),
            models=tuple(str(model) for model in variables["models"]),
            grpc_port=int(variables["grpc_port"]),
            rest_port=int(variables["rest_port"]),
            repository=str(variables["repository"]),
            state_dir=str(variables["state_dir"]),
            bind_address=str(variables["bind_address"]),
            nireq=int(variables.get("nireq", 0)),
            plugin_config=dict(variables.get("plugin_config") or {}),
            target_device=str(variables.get("target_device", "CPU")),
            grpc_workers=int(variables.get("grpc_workers", 8)),
            batching=_flag(variables.get("batching", False)),
            batching_parameters={
                str(name): int(value)
                for name, value in (variables.get("batching_parameters") or {}).items()
            },
            start_timeout_s=int(variables.get("start_timeout_s", 300)),
            runtime=str(variables.get("runtime", "docker")),
            cpuset=str(variables.get("cpuset") or ""),
            render_gid=int(variables["render_gid"])
            if str(variables.get("render_gid") or "").isdigit()
            else None,
        )

    @property
    def on_gpu(self) -> bool:
        """Whether OVMS compiles for an Intel GPU: GPU itself, or AUTO, HETERO or MULTI
        with GPU among their devices (GPU.1 and the like included)."""
        return (
            self.server_kind.program == "openvino-model-server"
            and re.search(r"(^|[:,])GPU(\.\d+)?($|[:,])", self.target_device.upper()) is not None
        )

    @property
    def server_kind(self) -> ServerKind:
        return server_kind(self.kind)


@dataclass(frozen=True)
class DockerContainer:
    """The arguments of community.docker.docker_container that differ by kind."""

    command: tuple[str, ...]
    env: Mapping[str, str]
    mounts: tuple[Mapping[str, Any], ...]
    published_ports: tuple[str, ...]
    healthcheck: Mapping[str, Any]
    cpuset_cpus: str | None  # None: the module's argument is left out
    devices: tuple[str, ...] = ()  # host:container device nodes (a GPU's /dev/dri)
    groups: tuple[str, ...] = ()  # extra groups of the container's user (the render group)

    def as_module_args(self) -> dict[str, Any]:
        """Plain lists and dicts, as the module takes them; no cpuset_cpus when not set."""
        args: dict[str, Any] = {
            "command": list(self.command),
            "env": dict(self.env),
            "mounts": [dict(mount) for mount in self.mounts],
            "published_ports": list(self.published_ports),
            "healthcheck": dict(self.healthcheck),
        }
        if self.cpuset_cpus:
            args["cpuset_cpus"] = self.cpuset_cpus
        if self.devices:
            args["devices"] = list(self.devices)
        if self.groups:
            args["groups"] = list(self.groups)
        return args


@dataclass(frozen=True)
class ConfigFile:
    name: str  # in the state directory, mounted at CONTAINER_CONFIG
    content: str
    managed: bool  # starts with Ansible's "managed" comment (JSON has no comments)


def models_root(kind: str, repository: str, *, in_container: bool) -> str:
    """The repository's tree of this kind's models, as the server sees it."""
    root = CONTAINER_MODELS if in_container else repository
    return f"{root}/{server_kind(kind).model_tree}"


def _openvino_model_server(settings: ServerSettings) -> list[str]:
    # One model is served from flags alone; more than one needs the config file, and
    # OVMS refuses model flags beside --config_path.
    if len(settings.models) == 1:
        model = settings.models[0]
        command = [
            "--model_name",
            model,
            "--model_path",
            f"{models_root(settings.kind, settings.repository, in_container=True)}/{model}",
            "--target_device",
            settings.target_device,
        ]
        if settings.nireq > 0:
            command += ["--nireq", str(settings.nireq)]
        if settings.plugin_config:
            command += ["--plugin_config", json.dumps(dict(settings.plugin_config))]
        # --metrics_enable also works beside --config_path when the file has no
        # `monitoring` section; the lab's file carries one, so only this form needs it.
        command.append("--metrics_enable")
    else:
        command = ["--config_path", f"{CONTAINER_CONFIG}/{settings.kind}.json"]
    return [*command, "--port", str(settings.grpc_port), "--rest_port", str(settings.rest_port)]


def _tensorflow_model_server(settings: ServerSettings) -> list[str]:
    # The models are named only in the model config file, which overrides the
    # --model_name and --model_base_path the image's entrypoint adds.
    command = [
        f"--port={settings.grpc_port}",
        f"--rest_api_port={settings.rest_port}",
        f"--model_config_file={CONTAINER_CONFIG}/{TFS_MODELS_CONFIG}",
        f"--monitoring_config_file={CONTAINER_CONFIG}/{TFS_MONITORING_CONFIG}",
    ]
    if settings.batching:
        command += [
            "--enable_batching=true",
            f"--batching_parameters_file={CONTAINER_CONFIG}/{TFS_BATCHING_CONFIG}",
        ]
    return command + _tfs_thread_flags(settings)


def _tfs_thread_flags(settings: ServerSettings) -> list[str]:
    # TensorFlow's thread pools sized to the server's CPU set, not to the host's cores it
    # may not use: as many threads per op, and ops at once, as the set has CPUs.
    cores = len(parse_cpuset(settings.cpuset))
    if not cores:
        return []
    return [
        f"--tensorflow_intra_op_parallelism={cores}",
        f"--tensorflow_inter_op_parallelism={cores}",
    ]


def _refserver(settings: ServerSettings) -> list[str]:
    # Inside its container refserver listens on every interface; docker publishes the
    # ports on the bind address only.
    return [
        "--runtime",
        settings.server_kind.refserver_runtime or "",
        "--config_path",
        f"{CONTAINER_CONFIG}/{settings.kind}.json",
        "--port",
        str(settings.grpc_port),
        "--rest_port",
        str(settings.rest_port),
        "--bind_address",
        "0.0.0.0",
        "--grpc_workers",
        str(settings.grpc_workers),
    ]


def _model_config_json(settings: ServerSettings) -> ConfigFile:
    """OVMS' config file format, which refserver reads too. OVMS takes the device and
    metrics from the file when it serves from one (--metrics_enable is for one model)."""
    openvino_model_server = settings.server_kind.program == "openvino-model-server"
    root = models_root(settings.kind, settings.repository, in_container=_in_container(settings))
    configs = []
    for model in settings.models:
        config: dict[str, Any] = {"name": model, "base_path": f"{root}/{model}"}
        if settings.nireq > 0:
            config["nireq"] = settings.nireq
        if settings.plugin_config:
            config["plugin_config"] = dict(settings.plugin_config)
        if openvino_model_server:
            config["target_device"] = settings.target_device
        configs.append({"config": config})
    document: dict[str, Any] = {"model_config_list": configs}
    if openvino_model_server:
        document["monitoring"] = {"metrics": {"enable": True}}
    text = json.dumps(document, indent=4, sort_keys=True, separators=(",", ": "))
    return ConfigFile(f"{settings.kind}.json", text + "\n", managed=False)


def _tfs_model_config(settings: ServerSettings) -> ConfigFile:
    root = models_root(settings.kind, settings.repository, in_container=_in_container(settings))
    lines = [
        "# TF Serving's ModelServerConfig (protobuf text), read with --model_config_file.",
        "model_config_list {",
    ]
    for model in settings.models:
        lines += [
            "  config {",
            f"    name: {json.dumps(model)}",
            f"    base_path: {json.dumps(f'{root}/{model}')}",
            '    model_platform: "tensorflow"',
            "  }",
        ]
    lines.append("}")
    return ConfigFile(TFS_MODELS_CONFIG, "\n".join(lines) + "\n", managed=True)


def _tfs_monitoring_config(settings: ServerSettings) -> ConfigFile:
    # Prometheus scrapes the path the registry gives for this kind.
    lines = [
        "# TF Serving's MonitoringConfig (protobuf text), read with --monitoring_config_file:",
        "# Prometheus metrics on the REST port, where the lab's Prometheus scrapes them.",
        "prometheus_config {",
        "  enable: true",
        f"  path: {json.dumps(settings.server_kind.metrics.path)}",
        "}",
    ]
    return ConfigFile(TFS_MONITORING_CONFIG, "\n".join(lines) + "\n", managed=True)


def _tfs_batching_config(settings: ServerSettings) -> ConfigFile:
    # BatchingParameters' numbers are google.protobuf wrappers: `max_batch_size { value: 32 }`.
    lines = [
        "# TF Serving's BatchingParameters (protobuf text), read with --batching_parameters_file",
        "# when --enable_batching is on.",
    ]
    for name, value in sorted(settings.batching_parameters.items(), key=lambda i: i[0].lower()):
        lines.append(f"{name} {{ value: {int(value)} }}")
    return ConfigFile(TFS_BATCHING_CONFIG, "\n".join(lines) + "\n", managed=True)


def _in_container(settings: ServerSettings) -> bool:
    return settings.runtime == "docker"


@dataclass(frozen=True)
class Program:
    """A server program: how its command is built and the config files it reads."""

    command: Callable[[ServerSettings], list[str]]
    configs: tuple[Callable[[ServerSettings], ConfigFile], ...]


# Per program (kinds.yml's `program`).
PROGRAMS = {
    "openvino-model-server": Program(_openvino_model_server, (_model_config_json,)),
    "tensorflow-model-server": Program(
        _tensorflow_model_server,
        (_tfs_model_config, _tfs_monitoring_config, _tfs_batching_config),
    ),
    "refserver": Program(_refserver, (_model_config_json,)),
}


def server_command(settings: ServerSettings) -> list[str]:
    """The container's arguments (after the image's entrypoint)."""
    return PROGRAMS[settings.server_kind.program].command(settings)


def config_files(settings: ServerSettings) -> list[ConfigFile]:
    """The files the kind reads from the state directory, with their content."""
    return [config(settings) for config in PROGRAMS[settings.server_kind.program].configs]


# The programs whose counters a status request reaches: TF Serving counts every REST
# request in :tensorflow:serving:request_count (no API label), a status call's too, so a
# periodic health check would add one request a second to a window. OVMS labels status
# calls method="GetModelStatus" and refserver counts REST status calls nowhere: a health
# check leaves their Predict counters and time histograms alone.
STATUS_COUNTED = frozenset({"tensorflow-model-server"})

# docker's way to switch off a health check, the image's own included.
NO_HEALTHCHECK: Mapping[str, Any] = {"test": ["NONE"]}


def healthcheck_script(models: Sequence[str], rest_port: int) -> str:
    """Healthy: every model AVAILABLE on TF Serving's status route, which all kinds answer.

    bash's /dev/tcp and grep work in every image, whether it has curl (OVMS' has) or not.
    The request is HTTP/1.1 with its Host header, and asks the server to close.
    """
    names = " ".join(shlex.quote(model) for model in models)
    request = (
        f"GET /v1/models/%s HTTP/1.1\\r\\nHost: 127.0.0.1:{rest_port}\\r\\n"
        "Connection: close\\r\\n\\r\\n"
    )
    return (
        f"for m in {names}; do exec 3<>/dev/tcp/127.0.0.1/{rest_port} || exit 1;"
        f" printf '{request}' \"$m\" >&3;"
        " grep -q '\"AVAILABLE\"' <&3 || exit 1; exec 3<&-; done"
    )


def healthcheck(settings: ServerSettings) -> Mapping[str, Any]:
    """The container's periodic check; none for a program that counts it as traffic (the
    role waits for AVAILABLE from the host either way, before any load)."""
    if settings.server_kind.program in STATUS_COUNTED:
        return NO_HEALTHCHECK
    # The start period covers the models' load.
    return {
        "test": ["CMD", "bash", "-c", healthcheck_script(settings.models, settings.rest_port)],
        "interval": "1s",
        "timeout": "5s",
        "retries": 3,
        "start_period": f"{settings.start_timeout_s}s",
    }


def docker_container(settings: ServerSettings) -> DockerContainer:
    """The container that runs this kind with these settings."""
    return DockerContainer(
        command=tuple(server_command(settings)),
        env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        # The repository and the configs are read-only inside.
        mounts=(
            {
                "type": "bind",
                "source": settings.repository,
                "target": CONTAINER_MODELS,
                "read_only": True,
            },
            {
                "type": "bind",
                "source": settings.state_dir,
                "target": CONTAINER_CONFIG,
                "read_only": True,
            },
        ),
        # Each port is the same inside and out, published on the bind address only.
        published_ports=tuple(
            f"{settings.bind_address}:{port}:{port}"
            for port in (settings.grpc_port, settings.rest_port)
        ),
        healthcheck=healthcheck(settings),
        cpuset_cpus=settings.cpuset or None,
        # OpenVINO's GPU plugin opens the render nodes, which the render group may use
        devices=(f"{GPU_DEVICES}:{GPU_DEVICES}",) if settings.on_gpu else (),
        groups=(str(settings.render_gid),)
        if settings.on_gpu and settings.render_gid is not None
        else (),
    )


# The Intel GPU's device nodes on the host, passed into an OVMS container on GPU.
GPU_DEVICES = "/dev/dri"
# The OVMS image tag's suffix of its GPU build (openvino/model_server:2025.2-gpu).
GPU_TAG_SUFFIX = "-gpu"


def image_for(settings: ServerSettings, image: str) -> str:
    """The image to run: OVMS on a GPU runs the `-gpu` build of the same tag."""
    if not settings.on_gpu or image.endswith(GPU_TAG_SUFFIX):
        return image
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:  # no tag: the registry's default one
        return f"{image}:latest{GPU_TAG_SUFFIX}"
    return f"{name}:{tag}{GPU_TAG_SUFFIX}"


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


# How each program says its own version: the `docker run` options before the image (an
# entrypoint that is the server itself) and the arguments after it. TF Serving's image
# starts a script that adds its own flags; its binary alone answers --version.
VERSION_COMMANDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openvino-model-server": ((), ("--version",)),
    "tensorflow-model-server": (("--entrypoint", "tensorflow_model_server"), ("--version",)),
    "refserver": ((), ("--version",)),
}


def version_command(kind: str, runtime: str, image: str, venv: str, user: str) -> list[str]:
    """The command that prints the kind's server version on its host (provenance)."""
    options, args = VERSION_COMMANDS[server_kind(kind).program]
    if runtime != "docker":
        return [f"{venv}/bin/servelab-refserver", *args]
    return ["docker", "run", "--rm", "--network", "none", "--user", user, *options, image, *args]
