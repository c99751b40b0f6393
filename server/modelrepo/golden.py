"""Golden samples: inputs, the SavedModel's outputs, and the tolerance a server must meet.

This module needs only numpy, so client hosts can read golden files without
TensorFlow or OpenVINO.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servelab.server.modelrepo.errors import ModelBuildError, ModelRepoInputError

# The tolerance never goes below these, whatever the measured runtime difference.
MIN_ATOL = 1e-3
RTOL = 1e-3
# atol = ATOL_FACTOR x the largest difference measured between the runtimes.
ATOL_FACTOR = 4.0
# A golden sample's top-1/top-2 margin must exceed MARGIN_FACTOR x atol.
MARGIN_FACTOR = 10.0


@dataclass(frozen=True)
class Golden:
    """The contents of REPO/golden/<model>.npz."""

    model: str
    input_name: str
    output_name: str
    inputs: np.ndarray  # float32 [N, ...]
    outputs: np.ndarray  # float32 [N, classes]
    atol: float
    rtol: float

    @property
    def samples(self) -> int:
        return int(self.inputs.shape[0])

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and expected outputs of a batch: row i is golden sample i % N."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        rows = np.arange(size) % self.samples
        return self.inputs[rows], self.outputs[rows]

    def matches(self, outputs: np.ndarray) -> np.ndarray:
        """Per row of a served batch: does it match the golden output within tolerance?"""
        _, expected = self.batch(len(outputs))
        if outputs.shape != expected.shape:
            return np.zeros(len(outputs), dtype=bool)
        close = np.isclose(outputs, expected, atol=self.atol, rtol=self.rtol)
        return close.reshape(len(outputs), -1).all(axis=1)


def load_golden(path: Path | str) -> Golden:
    """Read a golden npz file (numpy only)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return Golden(
                model=str(data["model"]),
                input_name=str(data["input_name"]),
                output_name=str(data["output_name"]),
                inputs=np.asarray(data["inputs"], dtype=np.float32),
                outputs=np.asarray(data["outputs"], dtype=np.float32),
                atol=float(data["atol"]),
                rtol=float(data["rtol"]),
            )
    except FileNotFoundError as exc:
        raise ModelRepoInputError(
            f"golden file {path} does not exist; build the model first "
            "(servelab models build --repo REPO --models NAME)"
        ) from exc
    except (KeyError, ValueError, OSError) as exc:
        raise ModelRepoInputError(
            f"{path} is not a servelab golden file ({exc}); expected an npz with "
            "inputs, outputs, input_name, output_name, model, atol, rtol"
        ) from exc


def write_golden(path: Path, golden: Golden) -> None:
    """Write atomically (temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                inputs=golden.inputs.astype(np.float32),
                outputs=golden.outputs.astype(np.float32),
                input_name=np.array(golden.input_name),
                output_name=np.array(golden.output_name),
                model=np.array(golden.model),
                atol=np.array(golden.atol, dtype=np.float64),
                rtol=np.array(golden.rtol, dtype=np.float64),
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def candidate_inputs(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Seeded, varied images: each has its own scale and offset, some are smooth gradients."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, *shape), dtype=np.float32)
    for i in range(count):
        noise = rng.random(shape, dtype=np.float32)
        if i % 3 == 2 and len(shape) == 3:
            h, w, _ = shape
            yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
            phase = rng.random(3) * 2 * np.pi
            freq = 1 + rng.random(3) * 6
            wave = [np.sin(freq[c] * (xx + yy) * np.pi + phase[c]) for c in range(shape[2])]
            noise = 0.5 + 0.5 * np.stack(wave, axis=-1).astype(np.float32) * 0.8 + 0.1 * noise
        scale = np.float32(rng.uniform(0.5, 2.0))
        offset = np.float32(rng.uniform(-0.5, 0.5))
        images[i] = noise * scale + offset
    return images


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= value."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-12):
            return float(f"{candidate:.1g}")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Selection:
    """Which candidates became golden samples, and why the tolerance is what it is."""

    indices: list[int]
    atol: float
    rtol: float
    max_abs_diff: dict[str, float]  # per runtime configuration, over the chosen samples
    min_margin: float


def top1_margin(outputs: np.ndarray) -> np.ndarray:
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return np.full(len(outputs), np.inf)
    top2 = np.sort(outputs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def select_golden(
    model: str,
    reference: np.ndarray,
    others: dict[str, np.ndarray],
    wanted: int,
    *,
    max_atol: float,
    exact: dict[str, float],
) -> Selection:
    """Choose `wanted` samples whose top-1 is unambiguous in every runtime configuration.

    `reference` holds the SavedModel's outputs on every candidate, `others` the
    outputs of other runtime configurations on the same candidates. Configurations
    named in `exact` must match the reference within the given bound on every
    candidate (an FP32 IR must compute what its SavedModel computes); the others
    (reduced precision) only decide the tolerance. The tolerance is the smallest
    that covers every configuration on the chosen samples, with each chosen
    sample's top-1/top-2 margin above MARGIN_FACTOR x atol.
    """
    if reference.size == 0 or not np.isfinite(reference).all():
        raise ModelBuildError(
            f"{model}: the SavedModel gives empty or non-finite outputs on the candidate "
            "inputs; choose another seed"
        )
    per_sample = np.zeros(len(reference))
    agree = np.ones(len(reference), dtype=bool)
    for label, outputs in others.items():
        if outputs.shape != reference.shape:
            raise ModelBuildError(
                f"{model}: {label} gives outputs of shape {outputs.shape}, the SavedModel "
                f"{reference.shape}; the IR does not match its SavedModel"
            )
        if not np.isfinite(outputs).all():
            raise ModelBuildError(f"{model}: {label} gives non-finite outputs on the candidates")
        diff = np.abs(outputs - reference).reshape(len(reference), -1).max(axis=1)
        bound = exact.get(label)
        if bound is not None and diff.max() > bound:
            raise ModelBuildError(
                f"{model}: the IR disagrees with the SavedModel: {label} differs by up to "
                f"{diff.max():.3g} on the candidate inputs, at most {bound:.3g} is allowed"
            )
        per_sample = np.maximum(per_sample, diff)
        if reference.ndim == 2:
            agree &= outputs.argmax(axis=1) == reference.argmax(axis=1)
    needed = np.array([max(MIN_ATOL, nice_ceiling(ATOL_FACTOR * d)) for d in per_sample])
    margins = top1_margin(reference)
    top1 = reference.argmax(axis=1) if reference.ndim == 2 else None
    for atol in sorted(set(needed.tolist())):
        if atol > max_atol:
            break
        pool = np.flatnonzero(agree & (needed <= atol) & (margins > MARGIN_FACTOR * atol))
        if len(pool) >= wanted:
            indices = _diverse([int(i) for i in pool], top1, margins, wanted)
            return Selection(
                indices=indices,
                atol=float(atol),
                rtol=RTOL,
                max_abs_diff={
                    label: float(np.abs(out[indices] - reference[indices]).max())
                    for label, out in others.items()
                },
                min_margin=float(margins[indices].min()),
            )
    raise ModelBuildError(
        f"{model}: fewer than {wanted} of {len(reference)} candidate inputs have a top-1 "
        f"that every runtime agrees on with a top-1/top-2 margin above {MARGIN_FACTOR:g} x "
        f"the tolerance (largest tolerance allowed {max_atol:g}; smallest needed "
        f"{needed.min():.3g}, largest margin {margins.max():.3g}); try another seed"
    )


def _diverse(
    eligible: list[int], top1: np.ndarray | None, margins: np.ndarray, wanted: int
) -> list[int]:
    """Prefer distinct top-1 classes, then large margins; keep the candidates' order."""
    by_margin = sorted(eligible, key=lambda i: -float(margins[i]))
    chosen: list[int] = []
    seen: set[int] = set()
    if top1 is not None:
        for i in by_margin:
            if int(top1[i]) not in seen and len(chosen) < wanted:
                chosen.append(i)
                seen.add(int(top1[i]))
    for i in by_margin:
        if len(chosen) >= wanted:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)
