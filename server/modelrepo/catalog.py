"""The models the repository knows how to build, and the hash that identifies a build."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

# Bump when anything about how a model is built, converted or sampled changes:
# it is part of every spec hash, so a new builder rebuilds old repositories.
BUILDER_FORMAT_VERSION = 2

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class TensorSignature:
    """One tensor of a serving signature; -1 marks a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TensorSignature:
        shape = data["shape"]
        if not isinstance(shape, list):
            raise ValueError(f"tensor shape must be a list, got {shape!r}")
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(shape))


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides the bytes of a built model."""

    name: str
    architecture: str  # "tiny" or the keras.applications class name
    seed: int
    image_size: int
    classes: int
    golden_samples: int
    golden_candidates: int
    # Candidate golden inputs are (seeded image + offset) x scale. The ResNets take
    # wide-range values: with random weights and zero biases their logits scale with
    # the input, and unit-range inputs give a flat softmax (margins ~1e-4) where
    # inputs of a few hundred give clear, stable top-1 margins.
    input_offset: float = 0.0
    input_scale: float = 1.0

    @property
    def input(self) -> TensorSignature:
        return TensorSignature(INPUT_NAME, "float32", (-1, self.image_size, self.image_size, 3))

    @property
    def output(self) -> TensorSignature:
        return TensorSignature(OUTPUT_NAME, "float32", (-1, self.classes))

    def with_seed(self, seed: int) -> ModelSpec:
        return replace(self, seed=seed)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self)
        data["input"] = self.input.to_json()
        data["output"] = self.output.to_json()
        return data


DEFAULT_SEED = 20240501

KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", "tiny", DEFAULT_SEED, 32, 10, golden_samples=8, golden_candidates=64),
        *(
            ModelSpec(name, architecture, DEFAULT_SEED, 224, 1000, 4, 12, -0.5, scale)
            for name, architecture, scale in (
                ("resnet_v1_50", "ResNet50", 512.0),
                ("resnet_v2_50", "ResNet50V2", 512.0),
                # 152 layers of random weights amplify far more: a smaller input range
                # keeps its softmax informative instead of one-hot.
                ("resnet_v1_152", "ResNet152", 32.0),
                ("resnet_v2_152", "ResNet152V2", 512.0),
            )
        ),
    )
}


def known_model(name: str) -> ModelSpec | None:
    return KNOWN_MODELS.get(name)


def spec_hash(spec_json: dict[str, object], versions: dict[str, str]) -> str:
    """Hash of a spec together with the builder format and the tool versions."""
    payload = {
        "builder_format_version": BUILDER_FORMAT_VERSION,
        "spec": spec_json,
        "versions": versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
