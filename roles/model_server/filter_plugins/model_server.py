"""The model_server role's view of the server-kind registry and of each kind's container.

The logic lives in servelab.controller (kinds.py, server_commands.py), which Ansible
imports from the project's venv; these filters only hand the role's variables over.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from servelab.controller.kinds import KINDS, server_kind
from servelab.controller.server_commands import (
    ServerSettings,
    config_files,
    docker_container,
    image_for,
    version_command,
)


def servelab_server_kind(name: str) -> dict[str, Any]:
    """The registry's entry of a kind (controller/kinds.yml), as a dict."""
    return dataclasses.asdict(server_kind(name))


def servelab_kinds_on_runtime(runtime: str) -> dict[str, dict[str, Any]]:
    """The kinds a lab runtime runs ('any': every kind), in the registry's order, by name,
    each with refserver's --runtime of it (None for a kind that is not a refserver)."""
    return {
        name: {"runtime": kind.refserver_runtime}
        for name, kind in KINDS.items()
        if runtime == "any" or runtime in kind.runtimes
    }


def servelab_docker_container(settings: dict[str, Any]) -> dict[str, Any]:
    """command, env, mounts, published_ports and healthcheck of the kind's container."""
    return docker_container(ServerSettings.from_role(settings)).as_module_args()


def servelab_config_files(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The config files the kind reads: [{name, content, managed}], name in the state dir."""
    return [
        dataclasses.asdict(config) for config in config_files(ServerSettings.from_role(settings))
    ]


def servelab_server_image(settings: dict[str, Any], image: str) -> str:
    """The image the kind runs with these settings (OVMS on a GPU: its `-gpu` build)."""
    return image_for(ServerSettings.from_role(settings), image)


def servelab_on_gpu(settings: dict[str, Any]) -> bool:
    """Whether the kind's target device needs the host's GPU (/dev/dri)."""
    return ServerSettings.from_role(settings).on_gpu


def servelab_version_command(
    kind: str, runtime: str, image: str, venv: str, user: str
) -> list[str]:
    """The command that prints the kind's server version (OVMS', TF Serving's, refserver's)."""
    return version_command(kind, runtime, image, venv, user)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "servelab_server_kind": servelab_server_kind,
            "servelab_kinds_on_runtime": servelab_kinds_on_runtime,
            "servelab_docker_container": servelab_docker_container,
            "servelab_config_files": servelab_config_files,
            "servelab_server_image": servelab_server_image,
            "servelab_on_gpu": servelab_on_gpu,
            "servelab_version_command": servelab_version_command,
        }
