"""Each kind's container and config files, as servelab.controller.server_commands builds
them for the model_server role, held to the flags and formats each server documents.

OVMS v2025.2 and TF Serving 2.18.0 cannot be pulled here, so nothing is started: each
command is read flag by flag against the tables below, every path in it is followed
through the container's mounts to the host, and the config files are parsed against the
documented JSON keys and protobuf messages (TF Serving's own ModelServerConfig from
tensorflow-serving-api; MonitoringConfig and BatchingParameters, which that package does
not ship, declared here with upstream's field names and types).
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from servelab.controller.kinds import KINDS
from servelab.controller.server_commands import (
    ConfigFile,
    DockerContainer,
    ServerSettings,
    config_files,
    docker_container,
    healthcheck_script,
    image_for,
    version_command,
)
from servelab.refserver.cli import build_parser
from tests.support.lab import PROJECT

ROLE = PROJECT / "roles" / "model_server"
GROUP_VARS = PROJECT / "inventory" / "group_vars" / "all.yml"

# ---------------------------------------------------------------------------------------
# OpenVINO Model Server: command-line flags and config.json keys.
#
# Sources: "Model Server Parameters"
#   https://docs.openvino.ai/2025/model-server/ovms_docs_parameters.html
#   (openvinotoolkit/model_server docs/parameters.md), with the option groups and types
#   of its parser, src/cli_parser.cpp ("single model" options vs "multi model"
#   --config_path; bool options are cxxopts switches that take no separate value);
# "Metrics" https://docs.openvino.ai/2025/model-server/ovms_docs_metrics.html
#   (docs/metrics.md): --metrics_enable with a single model, or
#   "monitoring": {"metrics": {"enable": true}} in the config file; /metrics on rest_port,
#   which must be set;
# "Starting the Server" https://docs.openvino.ai/2025/model-server/ovms_docs_serving_model.html
#   (docs/starting_server.md): config.json's model_config_list of {"config": {...}}.
#
# Value kinds: "int" a decimal integer, "str" any text, "json" a JSON object or text,
# "switch" no value at all.
# ---------------------------------------------------------------------------------------
# Model options: on the command line only when serving one model without --config_path
# ("Specifying config_path is mutually exclusive with putting model parameters in the CLI").
OVMS_MODEL_FLAGS = {
    "model_name": "str",
    "model_path": "str",
    "batch_size": "str",
    "shape": "str",
    "layout": "str",
    "model_version_policy": "json",
    "plugin_config": "json",
    "nireq": "int",
    "target_device": "str",
    "stateful": "switch",
    "idle_sequence_cleanup": "switch",
    "max_sequence_number": "int",
    "low_latency_transformation": "switch",
}
# Serving many models: the config file.
OVMS_MULTI_MODEL_FLAGS = {"config_path": "str"}
# Server options: either way.
OVMS_SERVER_FLAGS = {
    "port": "int",
    "rest_port": "int",
    "grpc_bind_address": "str",
    "rest_bind_address": "str",
    "grpc_workers": "int",
    "rest_workers": "int",
    "file_system_poll_wait_seconds": "int",
    "sequence_cleaner_poll_wait_minutes": "int",
    "custom_node_resources_cleaner_interval_seconds": "int",
    "cpu_extension": "str",
    "cache_dir": "str",
    "log_level": "str",
    "log_path": "str",
    "grpc_channel_arguments": "str",
    "metrics_enable": "switch",
    "metrics_list": "str",
}
OVMS_FLAGS = OVMS_MODEL_FLAGS | OVMS_MULTI_MODEL_FLAGS | OVMS_SERVER_FLAGS
# config.json: what a model_config_list entry's "config" may hold (the json names of the
# model options above: name and base_path stand for model_name and model_path).
OVMS_CONFIG_MODEL_KEYS = {
    "name": str,
    "base_path": str,
    "batch_size": (int, str),
    "shape": (str, dict),
    "layout": (str, dict),
    "model_version_policy": dict,
    "plugin_config": dict,
    "nireq": int,
    "target_device": str,
    "stateful": bool,
    "idle_sequence_cleanup": bool,
    "max_sequence_number": int,
    "low_latency_transformation": bool,
}
OVMS_CONFIG_TOP_KEYS = {
    "model_config_list",
    "pipeline_config_list",
    "custom_node_library_config_list",
    "mediapipe_config_list",
    "monitoring",
}
OVMS_METRICS_KEYS = {"enable": bool, "metrics_list": list}
OVMS_METRICS_PATH = "/metrics"

# ---------------------------------------------------------------------------------------
# TensorFlow Serving: tensorflow_model_server's flags, all given as --flag=value.
#
# Sources: the flag list of tensorflow_serving/model_servers/main.cc (tensorflow/serving),
# and "TensorFlow Serving Configuration" https://www.tensorflow.org/tfx/serving/serving_config
# (tensorflow_serving/g3doc/serving_config.md): --model_config_file (a ModelServerConfig;
# --model_name and --model_base_path are then ignored), --monitoring_config_file (a
# MonitoringConfig; metrics on --rest_api_port at prometheus_config.path),
# --enable_batching with --batching_parameters_file (a BatchingParameters).
# Value kinds: "int", "float", "bool" (true/false), "str".
# ---------------------------------------------------------------------------------------
TFS_FLAGS = {
    "port": "int",
    "grpc_socket_path": "str",
    "rest_api_port": "int",
    "rest_api_num_threads": "int",
    "rest_api_timeout_in_ms": "int",
    "rest_api_enable_cors_support": "bool",
    "enable_batching": "bool",
    "allow_version_labels_for_unavailable_models": "bool",
    "batching_parameters_file": "str",
    "enable_per_model_batching_parameters": "bool",
    "model_config_file": "str",
    "model_config_file_poll_wait_seconds": "int",
    "model_name": "str",
    "model_base_path": "str",
    "num_load_threads": "int",
    "num_unload_threads": "int",
    "max_num_load_retries": "int",
    "load_retry_interval_micros": "int",
    "file_system_poll_wait_seconds": "int",
    "flush_filesystem_caches": "bool",
    "tensorflow_session_parallelism": "int",
    "tensorflow_session_config_file": "str",
    "tensorflow_intra_op_parallelism": "int",
    "tensorflow_inter_op_parallelism": "int",
    "use_alts_credentials": "bool",
    "ssl_config_file": "str",
    "platform_config_file": "str",
    "per_process_gpu_memory_fraction": "float",
    "saved_model_tags": "str",
    "grpc_channel_arguments": "str",
    "grpc_max_threads": "int",
    "enable_model_warmup": "bool",
    "num_request_iterations_for_warmup": "int",
    "monitoring_config_file": "str",
    "remove_unused_fields_from_bundle_metagraph": "bool",
}


def _tfs_messages() -> dict[str, Any]:
    """MonitoringConfig (config/monitoring_config.proto) and BatchingParameters
    (servables/tensorflow/session_bundle_config.proto, whose numbers are
    google.protobuf wrappers), as message classes protobuf's text parser fills."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="servelab_test/tfserving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    scalar = descriptor_pb2.FieldDescriptorProto
    int64, string = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    fields = {
        "PrometheusConfig": [
            ("enable", scalar.TYPE_BOOL, None),
            ("path", scalar.TYPE_STRING, None),
        ],
        "MonitoringConfig": [
            ("prometheus_config", scalar.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
        ],
        "BatchingParameters": [
            ("max_batch_size", scalar.TYPE_MESSAGE, int64),
            ("batch_timeout_micros", scalar.TYPE_MESSAGE, int64),
            ("max_enqueued_batches", scalar.TYPE_MESSAGE, int64),
            ("num_batch_threads", scalar.TYPE_MESSAGE, int64),
            ("thread_pool_name", scalar.TYPE_MESSAGE, string),
            ("allowed_batch_sizes", scalar.TYPE_INT64, None),
            ("pad_variable_length_inputs", scalar.TYPE_BOOL, None),
        ],
    }
    for message, message_fields in fields.items():
        described = proto.message_type.add(name=message)
        for number, (name, kind, type_name) in enumerate(message_fields, 1):
            repeated = name == "allowed_batch_sizes"
            label = scalar.LABEL_REPEATED if repeated else scalar.LABEL_OPTIONAL
            described.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                described.field[-1].type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    described = {
        name: pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        for name in ("MonitoringConfig", "BatchingParameters")
    }
    return {name: message_factory.GetMessageClass(d) for name, d in described.items()}


TFS_MESSAGES = _tfs_messages()
# Which message each config flag's file holds.
TFS_CONFIG_FILES = {
    "model_config_file": model_server_config_pb2.ModelServerConfig,
    "monitoring_config_file": TFS_MESSAGES["MonitoringConfig"],
    "batching_parameters_file": TFS_MESSAGES["BatchingParameters"],
}

# Ports none of them the defaults, so that a value taken from elsewhere shows.
PORTS = {
    "ovms": {"grpc": 19400, "rest": 19401},
    "tfserving": {"grpc": 19410, "rest": 19411},
    "ref-openvino": {"grpc": 19420, "rest": 19421},
    "ref-tensorflow": {"grpc": 19430, "rest": 19431},
}
BATCHING = {
    "max_batch_size": 8,
    "batch_timeout_micros": 500,
    "num_batch_threads": 2,
    "max_enqueued_batches": 16,
}


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    models: tuple[str, ...]
    nireq: int = 0
    plugin_config: dict[str, Any] = field(default_factory=dict)
    target_device: str = "CPU"
    batching: bool = False
    cpuset: str = ""


CASES = {
    case.name: case
    for case in (
        Case(
            "ovms_one",
            "ovms",
            ("tiny",),
            nireq=4,
            plugin_config={"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 2},
            cpuset="0-3",
        ),
        Case("ovms_one_plain", "ovms", ("tiny",)),
        Case(
            "ovms_two",
            "ovms",
            ("tiny", "small"),
            nireq=2,
            plugin_config={"PERFORMANCE_HINT": "THROUGHPUT"},
            target_device="GPU",
        ),
        Case("ovms_two_plain", "ovms", ("tiny", "small")),
        Case("tfserving_two", "tfserving", ("tiny", "small")),
        Case("tfserving_batching", "tfserving", ("tiny",), batching=True),
        Case("tfserving_pinned", "tfserving", ("tiny",), cpuset="2-3,6"),
        Case("ref_openvino_two", "ref-openvino", ("tiny", "small"), nireq=3),
        Case("ref_tensorflow_one", "ref-tensorflow", ("tiny",)),
    )
}
OVMS_CASES = [name for name, case in CASES.items() if case.kind == "ovms"]
TFS_CASES = [name for name, case in CASES.items() if case.kind == "tfserving"]
REFSERVER_CASES = [name for name, case in CASES.items() if KINDS[case.kind].is_refserver]


@dataclass
class Built:
    """One case's container and config files, and where the host keeps what it mounts."""

    case: Case
    settings: ServerSettings
    container: DockerContainer
    files: dict[str, ConfigFile]

    @property
    def command(self) -> list[str]:
        return list(self.container.command)

    def host_path(self, container_path: str) -> Path:
        """Where a path inside the container is on the host, through the container's mounts."""
        inside = PurePosixPath(container_path)
        for mount in self.container.mounts:
            target = PurePosixPath(mount["target"])
            if inside == target or target in inside.parents:
                return Path(mount["source"]) / inside.relative_to(target)
        raise AssertionError(f"{container_path} is on no mount of {self.container.mounts}")

    def config_file(self, container_path: str) -> ConfigFile:
        """The config file a path of the command names: one the role writes, where it is
        mounted (the role writes each file into the state directory under its name)."""
        path = self.host_path(container_path)
        assert path.parent == Path(self.settings.state_dir), f"{container_path} is {path}"
        assert path.name in self.files, f"{container_path}: the role writes {sorted(self.files)}"
        return self.files[path.name]


def _settings(case: Case, tmp: Path) -> ServerSettings:
    """The settings as the role hands them over: its variables, numbers as text."""
    return ServerSettings.from_role(_role_variables(case, tmp))


def _role_variables(case: Case, tmp: Path) -> dict[str, Any]:
    return dict(
        {
            "kind": case.kind,
            "runtime": "docker",
            "models": list(case.models),
            "grpc_port": str(PORTS[case.kind]["grpc"]),
            "rest_port": str(PORTS[case.kind]["rest"]),
            "repository": str(tmp / "models"),
            "state_dir": str(tmp / case.name),
            "bind_address": "127.0.0.1",
            "nireq": str(case.nireq),
            "plugin_config": case.plugin_config,
            "target_device": case.target_device,
            "grpc_workers": "8",
            "batching": "true" if case.batching else "false",
            "batching_parameters": BATCHING,
            "start_timeout_s": "300",
            "cpuset": case.cpuset,
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    tmp = tmp_path_factory.mktemp("docker_commands")
    # The repository's layout (the model_repository role's): <tree>/<model>/<version>.
    for tree in ("ov", "tf"):
        for model in ("tiny", "small"):
            (tmp / "models" / tree / model / "1").mkdir(parents=True)
    out = {}
    for case in CASES.values():
        settings = _settings(case, tmp)
        files = {config.name: config for config in config_files(settings)}
        out[case.name] = Built(case, settings, docker_container(settings), files)
    return out


# --- reading commands -------------------------------------------------------------------


def _ovms_flags(command: list[str]) -> dict[str, str | None]:
    """OVMS' arguments as {flag: value}, value None for a switch; fails on anything else."""
    flags: dict[str, str | None] = {}
    tokens = iter(command)
    for token in tokens:
        assert token.startswith("--") and "=" not in token, f"{token!r}: not an OVMS flag name"
        name = token[2:]
        assert name in OVMS_FLAGS, f"--{name} is not among OVMS' documented parameters"
        assert name not in flags, f"--{name} given twice"
        kind = OVMS_FLAGS[name]
        value = None if kind == "switch" else next(tokens, None)
        if kind != "switch":
            assert value is not None, f"--{name} has no value"
            assert not value.startswith("--"), f"--{name} takes a value, got the flag {value}"
        if kind == "int":
            assert re.fullmatch(r"\d+", value), f"--{name} {value!r}: not an integer"
        elif kind == "json":
            assert isinstance(json.loads(value), dict), f"--{name} {value!r}: not a JSON object"
        elif kind == "str":
            assert value.strip(), f"--{name} is empty"
        flags[name] = value
    return flags


def _tfs_flags(command: list[str]) -> dict[str, str]:
    """TF Serving's arguments as {flag: value}; each must be a documented --flag=value."""
    flags = {}
    for token in command:
        match = re.fullmatch(r"--(\w+)=(.*)", token)
        assert match, f"{token!r}: TF Serving takes --flag=value"
        name, value = match.groups()
        assert name in TFS_FLAGS, f"--{name} is not a tensorflow_model_server flag"
        assert name not in flags, f"--{name} given twice"
        kind = TFS_FLAGS[name]
        if kind == "int":
            assert re.fullmatch(r"-?\d+", value), f"--{name}={value}: not an integer"
        elif kind == "float":
            float(value)
        elif kind == "bool":
            assert value in ("true", "false"), f"--{name}={value}: not true/false"
        else:
            assert value, f"--{name} is empty"
        flags[name] = value
    return flags


def _tfs_config(b: Built, flags: dict[str, str], flag: str) -> Any:
    """The file a TF Serving flag names, parsed as the message TF Serving reads from it."""
    message = TFS_CONFIG_FILES[flag]()
    text_format.Parse(b.config_file(flags[flag]).content, message)
    return message


def test_the_flag_readers_reject_undocumented_or_malformed_flags():
    assert _ovms_flags(["--metrics_enable", "--port", "9000"]) == {
        "metrics_enable": None,
        "port": "9000",
    }
    for command, message in {
        ("--model_nam", "x"): "not among OVMS' documented",
        ("--port",): "has no value",
        ("--port", "--rest_port", "1"): "takes a value",
        ("--metrics_enable", "true"): "not an OVMS flag name",
        ("--port=9000",): "not an OVMS flag name",
        ("--nireq", "four"): "not an integer",
        ("--port", "1", "--port", "2"): "given twice",
    }.items():
        with pytest.raises(AssertionError, match=re.escape(message)):
            _ovms_flags(list(command))
    with pytest.raises(json.JSONDecodeError):
        _ovms_flags(["--plugin_config", "PERFORMANCE_HINT=LATENCY"])
    for command, message in {
        ("--port", "8500"): "takes --flag=value",
        ("--rest_port=8501",): "not a tensorflow_model_server flag",
        ("--enable_batching=yes",): "not true/false",
    }.items():
        with pytest.raises(AssertionError, match=re.escape(message)):
            _tfs_flags(list(command))


def test_the_tf_serving_messages_reject_what_tf_serving_would():
    monitoring = TFS_MESSAGES["MonitoringConfig"]
    for text in (
        "prometheus_config { enabled: true }",
        "prometheus_config { enable: 1.5 }",
        "prometheus_config { path: /m }",
        "prometheus_config { enable: true",
    ):
        with pytest.raises(text_format.ParseError):
            text_format.Parse(text, monitoring())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 8", TFS_MESSAGES["BatchingParameters"]())


# --- OVMS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVMS_CASES)
def test_ovms_command_uses_documented_flags_with_the_given_ports(built, name):
    b = built[name]
    flags = _ovms_flags(b.command)
    assert flags["port"] == str(PORTS["ovms"]["grpc"])
    assert flags["rest_port"] == str(PORTS["ovms"]["rest"])
    # the ports the container listens on are the ones it publishes, on the bind address only
    assert sorted(b.container.published_ports) == sorted(
        f"127.0.0.1:{port}:{port}" for port in PORTS["ovms"].values()
    )


@pytest.mark.parametrize("name", [n for n in OVMS_CASES if len(CASES[n].models) == 1])
def test_ovms_serves_one_model_from_flags(built, name):
    b, case = built[name], CASES[name]
    flags = _ovms_flags(b.command)
    assert "config_path" not in flags
    assert flags["model_name"] == case.models[0]
    assert flags["model_path"] == f"/models/ov/{case.models[0]}"
    assert b.host_path(flags["model_path"]).is_dir(), "the model's directory in the repository"
    assert flags["target_device"] == case.target_device
    if case.nireq > 0:
        assert flags["nireq"] == str(case.nireq)
    else:
        assert "nireq" not in flags, "--nireq 0 is the default; the role leaves it out"
    if case.plugin_config:
        assert json.loads(flags["plugin_config"]) == case.plugin_config
    else:
        assert "plugin_config" not in flags
    # Metrics: the documented switch, which needs the REST port.
    assert "metrics_enable" in flags and flags["metrics_enable"] is None
    assert int(flags["rest_port"]) > 0


@pytest.mark.parametrize("name", [n for n in OVMS_CASES if len(CASES[n].models) > 1])
def test_ovms_serves_several_models_from_its_config_file(built, name):
    b, case = built[name], CASES[name]
    flags = _ovms_flags(b.command)
    assert set(flags) <= set(OVMS_MULTI_MODEL_FLAGS) | set(OVMS_SERVER_FLAGS), (
        "model parameters on the command line cannot go with --config_path"
    )
    assert PurePosixPath(flags["config_path"]).is_absolute(), "documented: an absolute path"
    config = json.loads(b.config_file(flags["config_path"]).content)

    assert set(config) <= OVMS_CONFIG_TOP_KEYS, sorted(config)
    entries = config["model_config_list"]
    assert all(set(entry) == {"config"} for entry in entries), entries
    models = [entry["config"] for entry in entries]
    assert [m["name"] for m in models] == list(case.models)
    for model in models:
        for key, value in model.items():
            assert key in OVMS_CONFIG_MODEL_KEYS, f"{key!r} is not an OVMS model config key"
            assert isinstance(value, OVMS_CONFIG_MODEL_KEYS[key]), f"{key}: {value!r}"
        assert model["base_path"] == f"/models/ov/{model['name']}"
        assert b.host_path(model["base_path"]).is_dir()
        assert model["target_device"] == case.target_device
        if case.nireq > 0:
            assert model["nireq"] == case.nireq
        else:
            assert model.get("nireq", 0) == 0
        assert model.get("plugin_config", {}) == case.plugin_config

    # With a config file, OVMS documents metrics as enabled in the file.
    metrics = config["monitoring"]["metrics"]
    assert set(config["monitoring"]) == {"metrics"}
    assert set(metrics) <= set(OVMS_METRICS_KEYS)
    assert metrics["enable"] is True
    assert int(flags["rest_port"]) > 0, "metrics are served on the REST port"


def test_prometheus_scrapes_the_path_ovms_serves_metrics_on():
    assert KINDS["ovms"].metrics.path == OVMS_METRICS_PATH


# --- TF Serving ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_command_uses_documented_flags(built, name):
    b, case = built[name], CASES[name]
    flags = _tfs_flags(b.command)
    assert flags["port"] == str(PORTS["tfserving"]["grpc"])
    assert flags["rest_api_port"] == str(PORTS["tfserving"]["rest"])
    assert sorted(b.container.published_ports) == sorted(
        f"127.0.0.1:{port}:{port}" for port in PORTS["tfserving"].values()
    )
    # The image's entrypoint adds --model_name and --model_base_path, which a model config
    # file overrides; the role's command names the models only in the file.
    assert "model_config_file" in flags
    assert not {"model_name", "model_base_path"} & set(flags)
    assert "monitoring_config_file" in flags
    batching = {"enable_batching", "batching_parameters_file"} & set(flags)
    if case.batching:
        assert flags["enable_batching"] == "true"
        assert "batching_parameters_file" in flags
    else:
        assert not batching, "batching flags without model_server_tfserving_batching"
    threads = {"tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"}
    if case.cpuset:
        # TensorFlow's pools as large as the server's set (2-3,6: three CPUs)
        assert {name: flags[name] for name in threads} == dict.fromkeys(threads, "3")
    else:
        assert not threads & set(flags), "no set: TensorFlow sizes its pools itself"


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_model_config_is_a_model_server_config(built, name):
    b, case = built[name], CASES[name]
    config = _tfs_config(b, _tfs_flags(b.command), "model_config_file")
    models = config.model_config_list.config
    assert [m.name for m in models] == list(case.models)
    for model in models:
        assert model.base_path == f"/models/tf/{model.name}"
        assert b.host_path(model.base_path).is_dir(), "the model's directory in the repository"
        assert model.model_platform == "tensorflow"


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_exports_metrics_where_prometheus_scrapes(built, name):
    b = built[name]
    config = _tfs_config(b, _tfs_flags(b.command), "monitoring_config_file")
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert config.prometheus_config.path == KINDS["tfserving"].metrics.path


def test_tfserving_batching_parameters_are_the_given_ones(built):
    b = built["tfserving_batching"]
    config = _tfs_config(b, _tfs_flags(b.command), "batching_parameters_file")
    assert {name: getattr(config, name).value for name in BATCHING} == BATCHING
    assert {f.name for f, _ in config.ListFields()} == set(BATCHING)


# --- refserver ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFSERVER_CASES)
def test_refserver_command_is_one_its_own_parser_takes(built, name):
    b, case = built[name], CASES[name]
    args = build_parser().parse_args(b.command)
    assert args.runtime == KINDS[case.kind].refserver_runtime
    assert (args.port, args.rest_port) == (PORTS[case.kind]["grpc"], PORTS[case.kind]["rest"])
    # inside its container it listens on every interface; docker publishes the bind address
    assert args.bind_address == "0.0.0.0"
    assert sorted(b.container.published_ports) == sorted(
        f"127.0.0.1:{port}:{port}" for port in PORTS[case.kind].values()
    )
    config = json.loads(b.config_file(args.config_path).content)
    tree = KINDS[case.kind].model_tree
    assert [entry["config"]["name"] for entry in config["model_config_list"]] == list(case.models)
    for entry in config["model_config_list"]:
        assert entry["config"]["base_path"] == f"/models/{tree}/{entry['config']['name']}"
        assert b.host_path(entry["config"]["base_path"]).is_dir()
        assert entry["config"].get("nireq", 0) == case.nireq
    assert "monitoring" not in config, "refserver always serves its metrics"


def test_the_native_runtime_names_the_hosts_model_paths(built):
    b = built["ref_openvino_two"]
    native = replace(b.settings, runtime="native")
    (config,) = config_files(native)
    document = json.loads(config.content)
    paths = [entry["config"]["base_path"] for entry in document["model_config_list"]]
    assert paths == [f"{native.repository}/ov/{model}" for model in native.models]


# --- the container around the command -----------------------------------------------------


@pytest.mark.parametrize("name", ["ovms_one", "ovms_two", "tfserving_two", "ref_openvino_two"])
def test_the_container_reads_models_and_configs_read_only(built, name):
    b = built[name]
    mounts = {m["target"]: m for m in b.container.mounts}
    assert {target: m["source"] for target, m in mounts.items()} == {
        "/models": b.settings.repository,
        "/config": b.settings.state_dir,
    }
    assert all(m["read_only"] is True and m["type"] == "bind" for m in mounts.values())
    args = b.container.as_module_args()
    if CASES[name].cpuset:
        assert args["cpuset_cpus"] == CASES[name].cpuset
    else:
        assert "cpuset_cpus" not in args, "no cpuset given: the argument is omitted"


def test_containers_run_as_no_root_by_default():
    lab = yaml.safe_load(GROUP_VARS.read_text())
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert "servelab_container_user" in defaults["model_server_container_user"]
    user = str(lab["servelab_container_user"])
    assert user.split(":")[0] not in ("0", "root"), f"the containers run as {user}"


@pytest.mark.parametrize("name", ["ovms_two", "ref_openvino_two", "ref_tensorflow_one"])
def test_healthy_means_every_model_available_on_the_rest_port(built, name):
    b = built[name]
    health = b.container.healthcheck
    assert health["test"][:3] == ["CMD", "bash", "-c"]
    script = health["test"][3]
    rest = PORTS[CASES[name].kind]["rest"]
    assert f"for m in {' '.join(CASES[name].models)}; do" in script
    assert f"/dev/tcp/127.0.0.1/{rest}" in script
    # HTTP/1.1 needs its Host header; the server closes after the one answer
    assert f"GET /v1/models/%s HTTP/1.1\\r\\nHost: 127.0.0.1:{rest}\\r\\n" in script
    assert "Connection: close" in script and '"AVAILABLE"' in script
    assert health["start_period"] == "300s", "the models' load time"
    assert b.container.env == {"TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_health_check_script_gets_an_answer_from_a_real_http_1_1_server(tmp_path):
    # bash's /dev/tcp against a server that answers HTTP/1.1 only when the Host is given
    class Status(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            ok = self.headers.get("Host") and self.path == "/v1/models/tiny"
            body = b'{"model_version_status": [{"state": "AVAILABLE"}]}' if ok else b"{}"
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        healthy = subprocess.run(["bash", "-c", healthcheck_script(["tiny"], port)], timeout=10)
        unknown = subprocess.run(["bash", "-c", healthcheck_script(["other"], port)], timeout=10)
    finally:
        server.shutdown()
    assert healthy.returncode == 0
    assert unknown.returncode != 0


@pytest.mark.parametrize("name", ["tfserving_two", "tfserving_batching"])
def test_a_tfserving_container_has_no_periodic_check_that_its_counters_see(built, name):
    # TF Serving counts every REST request, a status call's too: no check may run inside
    assert built[name].container.healthcheck == {"test": ["NONE"]}
    assert built[name].container.as_module_args()["healthcheck"] == {"test": ["NONE"]}


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "repository"),
    [("ovms", "openvino/model_server"), ("tfserving", "tensorflow/serving")],
)
def test_official_images_are_pinned_refs(kind, repository):
    pinned = KINDS[kind].image_ref
    name, _, tag = pinned.rpartition(":")
    assert name == repository, pinned
    assert re.fullmatch(r"[\w][\w.-]*", tag) and tag != "latest", f"{pinned}: not pinned"


# --- OVMS on a GPU --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "on_gpu"),
    [
        ("GPU", True),
        ("GPU.1", True),
        ("AUTO:GPU,CPU", True),
        ("HETERO:GPU,CPU", True),
        ("MULTI:CPU,GPU.0", True),
        ("CPU", False),
        ("AUTO", False),
        ("AUTO:CPU", False),
        ("NPU", False),
    ],
)
def test_a_target_device_naming_the_gpu_runs_ovms_on_the_gpu(tmp_path, device, on_gpu):
    case = replace(CASES["ovms_one_plain"], target_device=device)
    settings = replace(_settings(case, tmp_path), render_gid=109)
    args = docker_container(settings).as_module_args()
    image = image_for(settings, "openvino/model_server:2025.2")
    if on_gpu:
        assert args["devices"] == ["/dev/dri:/dev/dri"]
        assert args["groups"] == ["109"], "the render group's id, for the render nodes"
        assert image == "openvino/model_server:2025.2-gpu"
        # the device reaches OVMS itself, not only the container
        assert _ovms_flags(args["command"])["target_device"] == device
    else:
        assert "devices" not in args and "groups" not in args
        assert image == "openvino/model_server:2025.2"


def test_the_gpu_image_keeps_a_given_gpu_tag_and_the_role_hands_the_render_gid_over(tmp_path):
    case = replace(CASES["ovms_one_plain"], target_device="GPU")
    role_vars = {**_role_variables(case, tmp_path), "render_gid": "44"}
    settings = ServerSettings.from_role(role_vars)
    assert settings.render_gid == 44
    assert image_for(settings, "mirror:5000/ovms:2025.2-gpu") == "mirror:5000/ovms:2025.2-gpu"
    assert image_for(settings, "mirror:5000/ovms") == "mirror:5000/ovms:latest-gpu"
    # refserver and TF Serving never run OVMS' GPU build, whatever the device says
    for name in ("ref_openvino_two", "tfserving_two"):
        other = replace(_settings(replace(CASES[name], target_device="GPU"), tmp_path))
        assert not other.on_gpu
        assert "devices" not in docker_container(other).as_module_args()


# --- provenance ---------------------------------------------------------------------------


def test_each_program_is_asked_its_version_the_way_it_answers():
    image, user = "img:1", "65534:65534"
    ovms = version_command("ovms", "docker", image, "/venv", user)
    assert ovms == [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        user,
        image,
        "--version",
    ]
    # TF Serving's image starts a script that adds its flags: its binary answers alone
    tfs = version_command("tfserving", "docker", image, "/venv", user)
    assert tfs[-4:] == ["--entrypoint", "tensorflow_model_server", image, "--version"]
    native = version_command("ref-openvino", "native", "", "/venv", user)
    assert native == ["/venv/bin/servelab-refserver", "--version"]
    # refserver's own parser answers --version before it asks for its other flags
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
