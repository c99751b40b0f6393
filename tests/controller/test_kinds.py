"""The server-kind registry: controller/kinds.yml is the one place a kind is declared.

The controller's tables and the lab's Ansible variables all derive from it, and no other
file of the project spells a kind's name (tests, plans and docs may).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from servelab.controller import kinds as registry
from servelab.controller.kinds import KINDS, RegistryError, load_registry, parse_kind
from servelab.controller.plan import SERVER_KINDS
from servelab.controller.report import KIND_COLOURS, KIND_DESCRIPTIONS
from servelab.controller.results import OPENVINO_KINDS
from servelab.refserver.config import DEFAULT_PORTS
from tests.support.lab import BIN, PROJECT, env

REGISTRY = "controller/kinds.yml"
# Where a kind's name is at home besides the registry: tests, plans and documentation.
ALLOWED_DIRS = ("tests/", "plans/", "docs/")
# The container_images role speaks of images, named as the registry's `image` fields name
# them; an official image's name may be its kind's (servelab_images.<name> overrides it).
IMAGE_VOCABULARY_DIRS = ("roles/container_images/",)


def kind_spellings(line: str, names: set[str] | None = None) -> list[str]:
    """The kind names a line spells as kinds.

    A name counts where it stands alone: not inside a longer identifier, path or file
    name, so `tfserving_pb2`, `wire/tfserving.proto`, `ovms_requests_success`,
    `tfserving-models.config` and `tensorflow.serving` are not kinds, while `'ovms'`,
    `ovms:`, `kind="tfserving"` and "ovms and tfserving" are. Product names in capitals
    (OVMS, TF Serving) are prose, not kind names.
    """
    names = set(KINDS) if names is None else names
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.\-/])({alternatives})(?![\w-]|\.\w)")
    return [match.group(1) for match in pattern.finditer(line)]


def _tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.strip()}")
    return result.stdout.split()


def _kind_name_is_at_home(path: str) -> bool:
    return path == REGISTRY or path.startswith(ALLOWED_DIRS) or path.endswith(".md")


def test_no_file_outside_the_registry_tests_plans_and_docs_spells_a_kind():
    images = {kind.image for kind in KINDS.values()}
    found = []
    for path in _tracked_files():
        if _kind_name_is_at_home(path):
            continue
        try:
            text = (PROJECT / path).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary files; a file deleted but not yet committed
        names = set(KINDS)
        if path.startswith(IMAGE_VOCABULARY_DIRS):
            names -= images
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{path}:{number}: {name}" for name in kind_spellings(line, names)]
    assert not found, (
        "server kinds are declared in controller/kinds.yml only; read them from there "
        "(servelab.controller.kinds, or servelab_kinds and the maps of inventory/group_vars):\n"
        + "\n".join(found)
    )


def test_the_spelling_rule_finds_kinds_and_leaves_other_words_alone():
    assert kind_spellings("SERVER_KINDS = ('ovms', \"tfserving\")") == ["ovms", "tfserving"]
    assert kind_spellings("  ref-openvino: {grpc: 9001}") == ["ref-openvino"]
    assert kind_spellings("when: model_server_kind == 'ref-tensorflow'") == ["ref-tensorflow"]
    assert kind_spellings("# ovms and tfserving need docker.") == ["ovms", "tfserving"]
    assert kind_spellings('sum(x{kind="ovms"})') == ["ovms"]
    for other in (
        "from servelab.wire import tfserving_pb2 as pb",
        "protoc wire/tfserving.proto",
        'success="ovms_requests_success"',
        "package tensorflow.serving;",
        "dest: tfserving-models.config",
        "name: servelab-ovms-gpu",
        "OVMS and TF Serving, on the openvino and tensorflow runtimes",
        "model_server_tfserving_batching: false",
    ):
        assert kind_spellings(other) == [], other


def test_the_allowed_places_are_the_registry_tests_plans_and_docs():
    for path in (REGISTRY, "tests/roles/x.py", "plans/quick.yml", "docs/runtimes.md", "README.md"):
        assert _kind_name_is_at_home(path), path
    for path in ("controller/plan.py", "inventory/group_vars/all.yml", "roles/x/vars/main.yml"):
        assert not _kind_name_is_at_home(path), path


# --- the registry's content and the controller's tables --------------------------------


def test_the_registry_declares_the_designs_kinds_and_ports():
    ports = {name: (kind.ports.grpc, kind.ports.rest) for name, kind in KINDS.items()}
    assert ports == {
        "ovms": (9000, 8000),
        "tfserving": (8500, 8501),
        "ref-openvino": (9001, 8001),
        "ref-tensorflow": (8502, 8503),
    }
    assert {name: kind.proxy_port for name, kind in KINDS.items()} == {
        "ovms": 19000,
        "tfserving": 18500,
        "ref-openvino": 19001,
        "ref-tensorflow": 18502,
    }
    # Every kind speaks the TF Serving gRPC API, which the lab's clients send.
    assert all("tfs-grpc" in kind.apis for kind in KINDS.values())
    assert {name for name, kind in KINDS.items() if "native" in kind.runtimes} == {
        name for name, kind in KINDS.items() if kind.is_refserver
    }
    assert all("docker" in kind.runtimes for kind in KINDS.values())


def test_the_controllers_tables_are_the_registrys():
    assert tuple(KINDS) == SERVER_KINDS
    assert {"ovms", "ref-openvino"} == OPENVINO_KINDS
    assert {name: kind.colour for name, kind in KINDS.items()} == KIND_COLOURS
    assert len(set(KIND_COLOURS.values())) == len(KINDS), "the charts tell the kinds apart"
    assert KIND_DESCRIPTIONS["tfserving"] == "TensorFlow Serving"
    # a refserver result is never called OVMS or TF Serving
    for name, kind in KINDS.items():
        if kind.is_refserver:
            assert kind.description.startswith("refserver"), name
    assert DEFAULT_PORTS == {"openvino": (9001, 8001), "tensorflow": (8502, 8503)}


def test_metric_names_carry_units_and_selectors():
    ovms, tfs, ref = KINDS["ovms"].metrics, KINDS["tfserving"].metrics, KINDS["ref-openvino"]
    assert (ovms.time_unit_s, tfs.time_unit_s, ref.metrics.time_unit_s) == (1e-6, 1e-6, 1.0)
    # OVMS labels status calls method="GetModelStatus": Predict over TF Serving's gRPC API
    assert ovms.predict_labels == 'api="TensorFlowServing",method="Predict",interface="gRPC"'
    assert ovms.request_time_matchers("tfs-grpc") == 'interface="gRPC"'
    # TF Serving's histograms: Predict over gRPC; its runtime_latency is the inference time
    assert tfs.request_time_matchers("tfs-grpc") == 'API="Predict",entrypoint="GRPC"'
    assert tfs.inference_time == ":tensorflow:serving:runtime_latency"
    assert tfs.inference_time_labels == 'API="Predict"'
    assert ref.metrics.request_time_matchers("tfs-grpc") == ""
    # TF Serving has one counter with a status label, which server_metrics splits.
    assert tfs.success == tfs.fail == ":tensorflow:serving:request_count"
    assert tfs.path == "/monitoring/prometheus/metrics"
    assert KINDS["ref-tensorflow"].metrics == ref.metrics


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown server kind 'triton'; known: \\['ovms'"):
        registry.server_kind("triton")


def _entry(**changes):
    entry = yaml.safe_load((PROJECT / REGISTRY).read_text())["kinds"]["ovms"]
    return {**entry, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour_": "#000"}, "unknown fields \\['colour_'\\]"),
        ({"runtimes": ["native", "docker"]}, "the native runtime runs refserver kinds only"),
        ({"runtimes": ["kubernetes"]}, "not among"),
        ({"apis": ["tfs-grpc", "openai"]}, "apis"),
        ({"model_tree": "onnx"}, "model_tree"),
        ({"metrics": {"path": "/metrics"}}, "metrics:"),
    ],
)
def test_a_wrong_entry_fails_with_its_kind_and_field(changes, message):
    with pytest.raises(RegistryError, match=f"server kind ovms: .*{message}"):
        parse_kind("ovms", _entry(**changes))


def test_a_missing_field_is_named():
    entry = _entry()
    del entry["proxy_port"]
    with pytest.raises(RegistryError, match="missing \\['proxy_port'\\]"):
        parse_kind("ovms", entry)


def test_two_kinds_on_one_port_are_refused(tmp_path: Path):
    document = yaml.safe_load((PROJECT / REGISTRY).read_text())
    document["kinds"]["triton"] = {**document["kinds"]["ovms"], "proxy_port": 19999}
    path = tmp_path / "kinds.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(RegistryError, match="ovms and triton both use port 9000"):
        load_registry(path)


def test_a_new_kind_is_one_entry(tmp_path: Path):
    document = yaml.safe_load((PROJECT / REGISTRY).read_text())
    document["kinds"]["ovms-gpu"] = {
        **document["kinds"]["ovms"],
        "ports": {"grpc": 9010, "rest": 8010},
        "proxy_port": 19010,
        "description": "OpenVINO Model Server on the GPU",
    }
    path = tmp_path / "kinds.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    kinds = load_registry(path)
    assert list(kinds)[-1] == "ovms-gpu"
    assert kinds["ovms-gpu"].program == kinds["ovms"].program


# --- Ansible reads the same file ----------------------------------------------------------


SHOWN = (
    "servelab_server_ports",
    "servelab_proxy_ports",
    "servelab_kind_images",
    "servelab_native_kinds",
    "servelab_metrics_paths",
    "servelab_official_images",
    "servelab_image_refs",
)


def _show_lab_variables(tmp_path: Path, extra: dict) -> tuple[dict, dict[str, str]]:
    """The lab's variables on the local inventory's server, and the model_server role's
    default image of each kind, as ansible-playbook renders them."""
    defaults = yaml.safe_load((PROJECT / "roles/model_server/defaults/main.yml").read_text())
    tasks = [
        {
            "name": "Show the lab's variables",
            "ansible.builtin.debug": {"msg": {name: f"{{{{ {name} }}}}" for name in SHOWN}},
        },
        {
            "name": "Show each kind's image",
            "ansible.builtin.debug": {"msg": defaults["model_server_image"]},
            "loop": list(KINDS),
            "vars": {"model_server_kind": "{{ item }}"},
        },
    ]
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        yaml.safe_dump([{"name": "Show", "hosts": "server", "gather_facts": False, "tasks": tasks}])
    )
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), str(playbook), "-e", json.dumps(extra)],
        cwd=PROJECT,
        env={**env(), "ANSIBLE_STDOUT_CALLBACK": "json"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    (play,) = json.loads(result.stdout)["plays"]
    shown, images = (task["hosts"]["server"] for task in play["tasks"])
    return shown["msg"], {r["item"]: r["msg"] for r in images["results"]}


def test_the_labs_ansible_variables_default_to_the_registry(tmp_path: Path):
    """inventory/group_vars/all.yml's maps, as Ansible renders them on the local inventory."""
    shown, images = _show_lab_variables(tmp_path, {})
    assert shown["servelab_server_ports"] == {
        name: {"grpc": kind.ports.grpc, "rest": kind.ports.rest} for name, kind in KINDS.items()
    }
    assert shown["servelab_proxy_ports"] == {n: k.proxy_port for n, k in KINDS.items()}
    assert shown["servelab_kind_images"] == {n: k.image for n, k in KINDS.items()}
    assert shown["servelab_native_kinds"] == [n for n, k in KINDS.items() if k.is_refserver]
    assert shown["servelab_metrics_paths"] == {n: k.metrics.path for n, k in KINDS.items()}
    official = {k.image: k.image_ref for k in KINDS.values() if k.image_ref}
    assert shown["servelab_official_images"] == official
    # The official kinds run their pinned images, the refserver kinds the built one.
    built = yaml.safe_load((PROJECT / "inventory/group_vars/all.yml").read_text())[
        "servelab_built_images"
    ]
    assert images == {n: k.image_ref or built[k.image] for n, k in KINDS.items()}


def test_servelab_images_overrides_an_official_image_and_build_mode_keeps_them(tmp_path: Path):
    lab = yaml.safe_load((PROJECT / "inventory/group_vars/all.yml").read_text())
    mirror = "registry.lab.example:5000/ovms:2025.2-lab"
    overridden = {**lab["servelab_images"], "ovms": mirror}
    _, images = _show_lab_variables(tmp_path, {"servelab_images": overridden})
    assert images["ovms"] == mirror
    assert images["tfserving"] == KINDS["tfserving"].image_ref
    # OVMS and TF Serving cannot be built: build mode still runs the pinned images.
    shown, images = _show_lab_variables(tmp_path, {"servelab_docker_images": "build"})
    assert images["ovms"] == KINDS["ovms"].image_ref
    assert images["tfserving"] == KINDS["tfserving"].image_ref
    assert shown["servelab_image_refs"]["haproxy"] == lab["servelab_built_images"]["haproxy"]
