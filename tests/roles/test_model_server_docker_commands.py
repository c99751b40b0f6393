"""The docker runtime's OVMS and TF Serving containers, as Ansible renders them, checked
against the flags and config formats each server documents.

Neither image can be pulled here, so nothing is started: one ansible-playbook run renders,
for several cases, the role's own `community.docker.docker_container` arguments (copied
from tasks/run_docker.yml) and the role's own config templates (the template tasks of
tasks/configure.yml, writing where the role writes them). The test then reads each
command flag by flag against the tables below, follows every path in it through the
container's mounts to the file or model directory on the host, and parses the config
files against the documented JSON keys and protobuf fields.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support.lab import BIN, PROJECT, env

ROLE = PROJECT / "roles" / "model_server"
GROUP_VARS = PROJECT / "inventory" / "group_vars" / "all.yml"
CLIENT_PLAYBOOK = PROJECT / "playbooks" / "client.yml"

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
# The protobuf messages of those files, by field: (type, repeated). A type is a message
# of this table, a scalar (str, int, bool) or "message" (a block the test does not open).
# Sources (tensorflow/serving): config/model_server_config.proto (ModelServerConfig,
# ModelConfigList, ModelConfig), config/monitoring_config.proto (MonitoringConfig,
# PrometheusConfig), servables/tensorflow/session_bundle_config.proto (BatchingParameters,
# whose numbers are google.protobuf wrappers: `max_batch_size { value: 32 }`).
TFS_MESSAGES: dict[str, dict[str, tuple[Any, bool]]] = {
    "ModelServerConfig": {
        "model_config_list": ("ModelConfigList", False),
        "custom_model_config": ("message", False),
    },
    "ModelConfigList": {"config": ("ModelConfig", True)},
    "ModelConfig": {
        "name": (str, False),
        "base_path": (str, False),
        "model_platform": (str, False),
        "model_version_policy": ("message", False),
        "version_labels": ("message", True),
        "logging_config": ("message", False),
    },
    "MonitoringConfig": {"prometheus_config": ("PrometheusConfig", False)},
    "PrometheusConfig": {"enable": (bool, False), "path": (str, False)},
    "BatchingParameters": {
        "max_batch_size": ("Int64Value", False),
        "batch_timeout_micros": ("Int64Value", False),
        "max_enqueued_batches": ("Int64Value", False),
        "num_batch_threads": ("Int64Value", False),
        "thread_pool_name": ("StringValue", False),
        "allowed_batch_sizes": (int, True),
        "pad_variable_length_inputs": (bool, False),
    },
    "Int64Value": {"value": (int, False)},
    "StringValue": {"value": (str, False)},
}
# Which message each config flag's file holds.
TFS_CONFIG_FILES = {
    "model_config_file": "ModelServerConfig",
    "monitoring_config_file": "MonitoringConfig",
    "batching_parameters_file": "BatchingParameters",
}

# The ports every kind gets here: none of them the defaults, so a value taken from
# somewhere else than servelab_server_ports shows.
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
    extra: dict[str, Any] = field(default_factory=dict)
    files: bool = True  # render the config files too

    def variables(self, tmp: Path) -> dict[str, Any]:
        return {
            "model_server_kind": self.kind,
            "model_server_models": list(self.models),
            "model_server_nireq": self.nireq,
            "model_server_plugin_config": self.plugin_config,
            "model_server_target_device": self.target_device,
            "model_server_tfserving_batching": self.batching,
            "model_server_tfserving_batching_parameters": BATCHING,
            "model_server_cpuset": self.cpuset,
            "model_server_repository": str(tmp / "models"),
            "model_server_state_dir": str(tmp / self.name),
            **self.extra,
        }


def _group_vars() -> dict[str, Any]:
    return yaml.safe_load(GROUP_VARS.read_text())


def _overridden_images() -> dict[str, str]:
    images = dict(_group_vars()["servelab_images"])
    images["ovms"] = "registry.lab.example:5000/ovms:2025.2-lab"
    images["tfserving"] = "registry.lab.example:5000/tfs:2.18.0-lab"
    return images


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
        Case(
            "images_overridden",
            "ovms",
            ("tiny",),
            extra={"servelab_images": _overridden_images()},
            files=False,
        ),
        Case(
            "images_overridden_tfs",
            "tfserving",
            ("tiny",),
            extra={"servelab_images": _overridden_images()},
            files=False,
        ),
        Case(
            "images_built",
            "ovms",
            ("tiny",),
            extra={"servelab_docker_images": "build"},
            files=False,
        ),
        Case(
            "images_built_tfs",
            "tfserving",
            ("tiny",),
            extra={"servelab_docker_images": "build"},
            files=False,
        ),
    )
}
# The cases about commands and files (the others are about images only).
OVMS_CASES = [name for name, case in CASES.items() if case.kind == "ovms" and case.files]
TFS_CASES = [name for name, case in CASES.items() if case.kind == "tfserving" and case.files]


@dataclass
class Rendered:
    case: Case
    tmp: Path
    container: dict[str, Any]  # the docker_container arguments, rendered

    @property
    def command(self) -> list[str]:
        return self.container["command"]

    def host_path(self, container_path: str) -> Path:
        """Where a path inside the container is on the host, through the container's mounts."""
        inside = PurePosixPath(container_path)
        for mount in self.container["mounts"]:
            target = PurePosixPath(mount["target"])
            if inside == target or target in inside.parents:
                return Path(mount["source"]) / inside.relative_to(target)
        raise AssertionError(f"{container_path} is on no mount of {self.container['mounts']}")


def _role_tasks(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def _container_task_args() -> dict[str, Any]:
    """The arguments of run_docker.yml's docker_container task that starts the server."""
    for task in _role_tasks("run_docker.yml"):
        args = task.get("community.docker.docker_container")
        if args and args.get("state") == "started":
            return args
    raise AssertionError("run_docker.yml starts no container with community.docker")


def _config_template_tasks() -> list[dict[str, Any]]:
    """configure.yml's template tasks, their sources made absolute, their handlers dropped."""
    tasks = []
    for task in _role_tasks("configure.yml"):
        if "ansible.builtin.template" not in task:
            continue
        copy = {k: v for k, v in task.items() if k != "notify"}
        args = dict(copy["ansible.builtin.template"])
        args["src"] = f"{ROLE / 'templates'}/{args['src']}"
        copy["ansible.builtin.template"] = args
        # The cases about images alone skip the files (each costs a module run or two).
        when = copy.get("when", [])
        copy["when"] = [*([when] if isinstance(when, str) else when), "case_files"]
        tasks.append(copy)
    assert len(tasks) >= 2, "configure.yml writes OVMS' and TF Serving's configs with templates"
    return tasks


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Every case rendered by one ansible-playbook run: one inventory host a case, all on
    this machine and in parallel, each loading its case's variables over the role's."""
    tmp = tmp_path_factory.mktemp("docker_commands")
    # The repository's layout (the model_repository role's): <tree>/<model>/<version>.
    for tree in ("ov", "tf"):
        for model in ("tiny", "small"):
            (tmp / "models" / tree / model / "1").mkdir(parents=True)
    hosts = {}
    for case in CASES.values():
        case_vars = tmp / f"{case.name}.json"
        case_vars.write_text(json.dumps(case.variables(tmp)))
        (tmp / case.name).mkdir()
        hosts[case.name] = {"case_vars": str(case_vars), "case_files": case.files}
    inventory = tmp / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    play = {
        "name": "Render the model server containers",
        "hosts": "all",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [
            str(GROUP_VARS),
            str(ROLE / "defaults" / "main.yml"),
            str(ROLE / "vars" / "main.yml"),
        ],
        "vars": {
            "ansible_managed": "Managed by servelab's test of docker commands",
            "ansible_python_interpreter": str(BIN / "python"),
        },
        "tasks": [
            # include_vars outranks vars_files: the case's settings win over the defaults.
            {"name": "Load the case", "ansible.builtin.include_vars": "{{ case_vars }}"},
            *_config_template_tasks(),
            {
                "name": "Render the container",
                "ansible.builtin.debug": {"msg": _container_task_args()},
            },
        ],
    }
    playbook = tmp / "render.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    shared = {
        "servelab_runtime": "docker",
        "servelab_server_ports": PORTS,
        "servelab_state_dir": str(tmp / "state"),
    }
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "-e",
            json.dumps(shared),
        ],
        cwd=PROJECT,
        env={**env(), "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_FORKS": str(len(CASES))},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    (played,) = json.loads(result.stdout)["plays"]
    (task,) = [t for t in played["tasks"] if t["task"]["name"] == "Render the container"]
    assert set(task["hosts"]) == set(CASES)
    return {name: Rendered(CASES[name], tmp, out["msg"]) for name, out in task["hosts"].items()}


# --- reading commands -------------------------------------------------------------------


def _ovms_flags(command: list[str]) -> dict[str, str | None]:
    """OVMS' arguments as {flag: value}, value None for a switch; fails on anything else."""
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(command):
        token = command[i]
        assert token.startswith("--") and "=" not in token, f"{token!r}: not an OVMS flag name"
        name = token[2:]
        assert name in OVMS_FLAGS, f"--{name} is not among OVMS' documented parameters"
        assert name not in flags, f"--{name} given twice"
        if OVMS_FLAGS[name] == "switch":
            flags[name] = None
            i += 1
            continue
        assert i + 1 < len(command), f"--{name} has no value"
        value = command[i + 1]
        assert not value.startswith("--"), f"--{name} takes a value, got the flag {value}"
        _check_ovms_value(name, value)
        flags[name] = value
        i += 2
    return flags


def _check_ovms_value(name: str, value: str) -> None:
    kind = OVMS_FLAGS[name]
    if kind == "int":
        assert re.fullmatch(r"\d+", value), f"--{name} {value!r}: not an integer"
    elif kind == "json":
        parsed = json.loads(value)  # JSON text, as the parameters page shows for it
        assert isinstance(parsed, dict), f"--{name} {value!r}: not a JSON object"
    else:
        assert value.strip(), f"--{name} is empty"


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


# --- reading protobuf text --------------------------------------------------------------

_PROTO_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[{}:,;])""",
    re.VERBOSE,
)


class _Enum(str):
    """A bare identifier value other than true/false (an enum constant)."""


def _proto_tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _PROTO_TOKEN.match(text, pos)
        assert match, f"protobuf text: unexpected {text[pos : pos + 20]!r}"
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    return tokens


def parse_text_proto(text: str) -> list[tuple[str, Any]]:
    """Protobuf text format as [(field, value)], a message's value a list of the same.

    Enough of the format for config files: `name: scalar`, `name { ... }` (or
    `name: { ... }`), `#` comments, `,` or `;` between fields.
    """
    tokens = _proto_tokens(text)
    fields, end = _parse_fields(tokens, 0, nested=False)
    assert end == len(tokens)
    return fields


def _parse_fields(tokens: list[tuple[str, str]], pos: int, nested: bool) -> tuple[list, int]:
    fields: list[tuple[str, Any]] = []
    while True:
        if pos == len(tokens):
            assert not nested, "protobuf text: a block is not closed"
            return fields, pos
        kind, text = tokens[pos]
        if text == "}":
            assert nested, "protobuf text: `}` closes nothing"
            return fields, pos + 1
        assert kind == "ident", f"protobuf text: expected a field name, got {text!r}"
        pos += 1
        colon = pos < len(tokens) and tokens[pos][1] == ":"
        pos += colon
        assert pos < len(tokens), f"protobuf text: {text} has no value"
        if tokens[pos][1] == "{":
            value, pos = _parse_fields(tokens, pos + 1, nested=True)
        else:
            assert colon, f"protobuf text: scalar field {text} needs `:`"
            value = _proto_scalar(*tokens[pos])
            pos += 1
        fields.append((text, value))
        if pos < len(tokens) and tokens[pos][1] in (",", ";"):
            pos += 1


def _proto_scalar(kind: str, text: str) -> Any:
    if kind == "string":
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    if kind == "number":
        return float(text) if re.search(r"[.eE]", text) else int(text)
    assert kind == "ident", f"protobuf text: {text!r} is not a value"
    return {"true": True, "false": False}.get(text, _Enum(text))


def check_message(fields: list[tuple[str, Any]], message: str) -> dict[str, list[Any]]:
    """The fields of `message` by name (each a list: one value unless repeated), checked
    against TFS_MESSAGES: known fields, scalar types, non-repeated fields given once."""
    spec = TFS_MESSAGES[message]
    out: dict[str, list[Any]] = {}
    for name, value in fields:
        assert name in spec, f"{message} has no field {name!r} (it has {sorted(spec)})"
        kind, repeated = spec[name]
        assert repeated or name not in out, f"{message}.{name} is not repeated, given twice"
        if kind == "message" or kind in TFS_MESSAGES:
            assert isinstance(value, list), f"{message}.{name} is a message, got {value!r}"
            if kind != "message":
                value = check_message(value, kind)
        elif kind is bool:
            assert isinstance(value, bool), f"{message}.{name} is a bool, got {value!r}"
        elif kind is int:
            assert isinstance(value, int) and not isinstance(value, bool), (
                f"{message}.{name} is an integer, got {value!r}"
            )
        else:
            assert isinstance(value, str) and not isinstance(value, _Enum), (
                f"{message}.{name} is a quoted string, got {value!r}"
            )
        out.setdefault(name, []).append(value)
    return out


def _tfs_config(r: Rendered, flags: dict[str, str], flag: str) -> dict[str, list[Any]]:
    path = r.host_path(flags[flag])
    assert path.is_file(), f"--{flag}={flags[flag]} is {path} on the host, not written"
    return check_message(parse_text_proto(path.read_text()), TFS_CONFIG_FILES[flag])


# --- the parsers can fail -----------------------------------------------------------------


def test_the_protobuf_reader_rejects_what_tf_serving_would():
    good = "# comment\nprometheus_config {\n  enable: true,\n  path: '/m'\n}\n"
    assert check_message(parse_text_proto(good), "MonitoringConfig") == {
        "prometheus_config": [{"enable": [True], "path": ["/m"]}]
    }
    bad = {
        "prometheus_config { enabled: true }": "has no field 'enabled'",
        "prometheus_config { enable: 1 }": "is a bool",
        "prometheus_config { path: /m }": "unexpected",
        "prometheus_config { path: x }": "quoted string",
        "prometheus_config { enable true }": "needs `:`",
        "prometheus_config { enable: true": "not closed",
        "prometheus_config {} prometheus_config {}": "given twice",
    }
    for text, message in bad.items():
        with pytest.raises(AssertionError, match=re.escape(message)):
            check_message(parse_text_proto(text), "MonitoringConfig")
    with pytest.raises(AssertionError, match="is a message"):
        check_message(parse_text_proto("max_batch_size: 8"), "BatchingParameters")


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


# --- OVMS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVMS_CASES)
def test_ovms_command_uses_documented_flags_with_the_given_ports(rendered, name):
    r = rendered[name]
    flags = _ovms_flags(r.command)
    assert flags["port"] == str(PORTS["ovms"]["grpc"])
    assert flags["rest_port"] == str(PORTS["ovms"]["rest"])
    # the ports the container listens on are the ones it publishes, on the bind address only
    assert sorted(r.container["published_ports"]) == sorted(
        f"127.0.0.1:{port}:{port}" for port in PORTS["ovms"].values()
    )


@pytest.mark.parametrize("name", [n for n in OVMS_CASES if len(CASES[n].models) == 1])
def test_ovms_serves_one_model_from_flags(rendered, name):
    r, case = rendered[name], CASES[name]
    flags = _ovms_flags(r.command)
    assert "config_path" not in flags
    assert flags["model_name"] == case.models[0]
    assert flags["model_path"] == f"/models/ov/{case.models[0]}"
    assert r.host_path(flags["model_path"]).is_dir(), "the model's directory in the repository"
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
def test_ovms_serves_several_models_from_its_config_file(rendered, name):
    r, case = rendered[name], CASES[name]
    flags = _ovms_flags(r.command)
    assert set(flags) <= set(OVMS_MULTI_MODEL_FLAGS) | set(OVMS_SERVER_FLAGS), (
        "model parameters on the command line cannot go with --config_path"
    )
    assert PurePosixPath(flags["config_path"]).is_absolute(), "documented: an absolute path"
    path = r.host_path(flags["config_path"])
    assert path.is_file(), f"--config_path {flags['config_path']} is {path}: not written there"
    config = json.loads(path.read_text())

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
        assert r.host_path(model["base_path"]).is_dir()
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
    assert _client_metrics_paths()["ovms"] == OVMS_METRICS_PATH


# --- TF Serving ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_command_uses_documented_flags(rendered, name):
    r, case = rendered[name], CASES[name]
    flags = _tfs_flags(r.command)
    assert flags["port"] == str(PORTS["tfserving"]["grpc"])
    assert flags["rest_api_port"] == str(PORTS["tfserving"]["rest"])
    assert sorted(r.container["published_ports"]) == sorted(
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


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_model_config_is_a_model_server_config(rendered, name):
    r, case = rendered[name], CASES[name]
    config = _tfs_config(r, _tfs_flags(r.command), "model_config_file")
    (model_list,) = config["model_config_list"]
    models = model_list["config"]
    assert [m["name"] for m in models] == [[model] for model in case.models]
    for model in models:
        (name_,), (base_path,) = model["name"], model["base_path"]
        assert base_path == f"/models/tf/{name_}"
        assert r.host_path(base_path).is_dir(), "the model's directory in the repository"
        assert model["model_platform"] == ["tensorflow"]


@pytest.mark.parametrize("name", TFS_CASES)
def test_tfserving_exports_metrics_where_prometheus_scrapes(rendered, name):
    r = rendered[name]
    config = _tfs_config(r, _tfs_flags(r.command), "monitoring_config_file")
    (prometheus,) = config["prometheus_config"]
    assert prometheus["enable"] == [True]
    assert prometheus["path"] == ["/monitoring/prometheus/metrics"]
    assert prometheus["path"] == [_client_metrics_paths()["tfserving"]]


def test_tfserving_batching_parameters_are_the_given_ones(rendered):
    r = rendered["tfserving_batching"]
    config = _tfs_config(r, _tfs_flags(r.command), "batching_parameters_file")
    assert {name: value[0]["value"] for name, value in config.items()} == {
        name: [value] for name, value in BATCHING.items()
    }


# --- the container around the command -----------------------------------------------------


@pytest.mark.parametrize("name", ["ovms_one", "ovms_two", "tfserving_two"])
def test_the_container_reads_models_and_configs_read_only_as_no_root(rendered, name):
    r, case = rendered[name], CASES[name]
    given = case.variables(r.tmp)
    mounts = {m["target"]: m for m in r.container["mounts"]}
    assert {target: m["source"] for target, m in mounts.items()} == {
        "/models": given["model_server_repository"],
        "/config": given["model_server_state_dir"],
    }
    assert all(m["read_only"] is True and m["type"] == "bind" for m in mounts.values())
    user = str(r.container["user"])
    assert user.split(":")[0] not in ("0", "root"), f"the container runs as {user}"
    if case.cpuset:
        assert r.container["cpuset_cpus"] == case.cpuset
    else:
        assert "cpuset_cpus" not in r.container, "no cpuset given: the argument is omitted"


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "repository"),
    [("ovms", "openvino/model_server"), ("tfserving", "tensorflow/serving")],
)
def test_images_are_pinned_official_refs_that_servelab_images_overrides(rendered, kind, repository):
    pinned = _group_vars()["servelab_images"][kind]
    name, _, tag = pinned.rpartition(":")
    assert name == repository, pinned
    assert re.fullmatch(r"[\w][\w.-]*", tag) and tag != "latest", f"{pinned}: not pinned"

    suffix = "" if kind == "ovms" else "_tfs"
    default = "ovms_one" if kind == "ovms" else "tfserving_two"
    assert rendered[default].container["image"] == pinned
    # OVMS and TF Serving cannot be built: build mode still runs the pinned images.
    assert rendered[f"images_built{suffix}"].container["image"] == pinned
    assert rendered[f"images_overridden{suffix}"].container["image"] == _overridden_images()[kind]


# --- helpers ------------------------------------------------------------------------------


def _client_metrics_paths() -> dict[str, str]:
    """playbooks/client.yml's __client_metrics_paths: where Prometheus scrapes each kind."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__client_metrics_paths" in node:
                found.append(node["__client_metrics_paths"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(CLIENT_PLAYBOOK.read_text()))
    assert len(found) == 1, "client.yml defines __client_metrics_paths once"
    return found[0]
