"""The served models, their version state, and the lookups requests go through.

Each model version moves START -> LOADING -> AVAILABLE (or END with an error
when loading fails), and again to UNLOADING -> END at shutdown; GetModelStatus
and the REST status route report exactly the state the server is in.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from servelab.refserver.config import ModelConfig
from servelab.refserver.runtime import Runtime, TensorSpec


class State(enum.Enum):
    """ModelVersionStatus.State, with TF Serving's numbers."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ServingError(Exception):
    """A request refserver answers with a gRPC status instead of a response."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def versions_text(versions: tuple[int, ...]) -> str:
    label = "version" if len(versions) == 1 else "versions"
    return f"{label} {', '.join(str(v) for v in versions)}"


@dataclass
class ServedModel:
    config: ModelConfig
    state: State = State.START
    error: str = ""
    runtime: Runtime | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> int:
        return self.config.version

    def input_spec(self, name: str) -> TensorSpec | None:
        assert self.runtime is not None
        for spec in self.runtime.inputs:
            if spec.name == name:
                return spec
        return None


class ModelRegistry:
    """The models of one server, looked up by a request's ModelSpec."""

    def __init__(self, configs: tuple[ModelConfig, ...]) -> None:
        self._models = {config.name: ServedModel(config) for config in configs}
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def set_state(
        self, model: ServedModel, state: State, error: str = "", runtime: Runtime | None = None
    ) -> None:
        with self._lock:
            model.state = state
            model.error = error
            if runtime is not None:
                model.runtime = runtime

    def find(self, name: str, version: int | None = None, label: str = "") -> ServedModel:
        """The model a ModelSpec names; NOT_FOUND naming what is served otherwise."""
        model = self._models.get(name)
        if model is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model '{name}' not found; this server serves {_quoted(self.names)}",
            )
        served = versions_text(model.config.versions)
        if label:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model '{name}' has no version label '{label}'; it serves {served} (no labels)",
            )
        if version is not None and version not in model.config.versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model '{name}' version {version} not found; serving {served}",
            )
        return model

    def find_available(self, name: str, version: int | None = None, label: str = "") -> ServedModel:
        """Like find(), and UNAVAILABLE while the version is not (or no longer) loaded."""
        model = self.find(name, version, label)
        if model.state is not State.AVAILABLE or model.runtime is None:
            detail = f": {model.error}" if model.error else ""
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"model '{name}' version {model.version} is {model.state.name}{detail}",
            )
        return model
