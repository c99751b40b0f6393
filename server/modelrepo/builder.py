"""build_repository and add_user_model: the two ways a model gets into a repository."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servelab.controller.filelock import exclusive
from servelab.server.modelrepo.catalog import (
    KNOWN_MODELS,
    ModelSpec,
    TensorSignature,
    spec_hash,
)
from servelab.server.modelrepo.errors import ModelBuildError, ModelRepoInputError
from servelab.server.modelrepo.golden import (
    Golden,
    Selection,
    candidate_inputs,
    select_golden,
    write_golden,
)
from servelab.server.modelrepo.manifest import (
    GoldenRecord,
    Manifest,
    ModelEntry,
    file_records,
    load_manifest,
    save_manifest,
    sha256_file,
)

# The largest golden tolerance a build accepts (on softmax probabilities): it must
# cover reduced-precision runtimes (bf16 on CPUs that have it) on the chosen samples.
MAX_ATOL = 0.05
# FP32 runtimes must agree with the SavedModel this closely on every candidate:
# a larger difference means the conversion changed what the model computes.
MAX_F32_DIFF = 1e-3
LOCK_FILE = ".servelab-build.lock"
STAGING_DIR = ".staging"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Log = Callable[[str], None]


@dataclass(frozen=True)
class ModelOutcome:
    """What happened to one model in one call."""

    name: str
    status: str  # "built", "unchanged", "user-supplied" or "added"
    seconds: float
    spec_hash: str

    @property
    def changed(self) -> bool:
        return self.status in ("built", "added")


@dataclass(frozen=True)
class BuildReport:
    repo: Path
    outcomes: list[ModelOutcome] = field(default_factory=list)

    @property
    def built(self) -> list[str]:
        return [o.name for o in self.outcomes if o.changed]

    @property
    def changed(self) -> bool:
        return bool(self.built)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": str(self.repo),
            "changed": self.changed,
            "built": self.built,
            "models": [
                {
                    "name": o.name,
                    "status": o.status,
                    "seconds": round(o.seconds, 3),
                    "spec_hash": o.spec_hash,
                }
                for o in self.outcomes
            ],
        }


def tool_versions() -> dict[str, str]:
    """Versions that go into every spec hash (read without importing the packages)."""
    versions = {}
    for package in ("tensorflow", "keras", "openvino"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def _quiet(_: str) -> None:
    pass


def build_repository(
    repo: Path | str,
    models: Sequence[str | ModelSpec],
    *,
    seed: int | None = None,
    log: Log = _quiet,
) -> BuildReport:
    """Build the named models into `repo`; models whose manifest entry is current are kept.

    `seed` replaces the catalog seed of every named model (other weights, same shapes).
    """
    root = Path(repo)
    specs = _resolve_specs(root, models, seed)
    _prepare_root(root)
    versions = tool_versions()
    report = BuildReport(repo=root)
    with exclusive(root / LOCK_FILE):
        manifest = load_manifest(root)
        for spec in specs:
            outcome = _build_one(root, manifest, spec, versions, log)
            report.outcomes.append(outcome)
            log(f"{outcome.name}: {outcome.status} ({outcome.seconds:.1f} s)")
    return report


def _resolve_specs(
    root: Path, models: Sequence[str | ModelSpec], seed: int | None
) -> list[ModelSpec | str]:
    if not models:
        raise ModelRepoInputError(
            f"no models named; choose from {', '.join(KNOWN_MODELS)} or a user model"
        )
    user_models = {
        name for name, entry in _peek_manifest(root).models.items() if entry.user_supplied
    }
    specs: list[ModelSpec | str] = []
    for item in models:
        if isinstance(item, ModelSpec):
            spec: ModelSpec | str = item
        elif item in user_models:
            spec = item
        elif item in KNOWN_MODELS:
            spec = KNOWN_MODELS[item]
        else:
            extra = f"; user models here: {', '.join(sorted(user_models))}" if user_models else ""
            raise ModelRepoInputError(
                f"unknown model {item!r}; known models are {', '.join(KNOWN_MODELS)}{extra} "
                "(add your own with: servelab models add --name NAME --saved-model DIR)"
            )
        if seed is not None and isinstance(spec, ModelSpec):
            spec = spec.with_seed(seed)
        if spec not in specs:
            specs.append(spec)
    return specs


def _peek_manifest(root: Path) -> Manifest:
    return load_manifest(root) if root.is_dir() else Manifest()


def _prepare_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ModelRepoInputError(
            f"model repository {root} is a file; give a directory (it is created if missing)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-probe."):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ModelRepoInputError(
            f"model repository {root} is not writable ({reason}); "
            "give a directory you can create files in"
        ) from exc


def _build_one(
    root: Path, manifest: Manifest, spec: ModelSpec | str, versions: dict[str, str], log: Log
) -> ModelOutcome:
    if isinstance(spec, str):  # a user model: never rebuilt
        entry = manifest.models[spec]
        return ModelOutcome(spec, "user-supplied", 0.0, entry.spec_hash)
    spec_json = spec.to_json()
    digest = spec_hash(spec_json, versions)
    entry = manifest.models.get(spec.name)
    if entry is not None and entry.spec_hash == digest and entry.files_intact(root):
        return ModelOutcome(spec.name, "unchanged", 0.0, digest)
    log(f"{spec.name}: building ({spec.architecture}, seed {spec.seed})")
    started = time.monotonic()
    with _staging(root, spec.name) as staging:
        golden, selection = _build_into(spec, staging, log)
        seconds = time.monotonic() - started
        entry = _install(
            root,
            staging,
            name=spec.name,
            golden=golden,
            selection=selection,
            has_saved_model=True,
            has_ir=True,
            source="built",
            spec_json=spec_json,
            digest=digest,
            versions=versions,
            seconds=seconds,
            origin={},
        )
    manifest.models[spec.name] = entry
    save_manifest(root, manifest)
    return ModelOutcome(spec.name, "built", seconds, digest)


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    base = root / STAGING_DIR
    base.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()


def _build_into(spec: ModelSpec, staging: Path, log: Log) -> tuple[Golden, Selection]:
    from servelab.server.modelrepo.conversion import convert_saved_model
    from servelab.server.modelrepo.exporting import (
        SavedModelRunner,
        build_keras_model,
        export_saved_model,
    )

    model = build_keras_model(spec)
    export_saved_model(model, spec, staging / "tf")
    del model
    _release_keras()
    runner = SavedModelRunner(staging / "tf")
    _expect_signature(spec.name, "SavedModel", runner.input, spec.input)
    _expect_signature(spec.name, "SavedModel", runner.output, spec.output)
    log(f"{spec.name}: converting to OpenVINO IR")
    xml = convert_saved_model(staging / "tf", staging / "ov", spec.input.name, spec.output.name)
    log(f"{spec.name}: choosing golden samples")
    candidates = candidate_inputs(spec.input.shape[1:], spec.golden_candidates, spec.seed)
    candidates = ((candidates + spec.input_offset) * spec.input_scale).astype(np.float32)
    return _golden_from(spec.name, candidates, runner, xml, expect=(spec.input, spec.output))


def _release_keras() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


def _expect_signature(model: str, where: str, got: TensorSignature, want: TensorSignature) -> None:
    if (got.name, got.dtype, got.shape) != (want.name, want.dtype, want.shape):
        raise ModelBuildError(
            f"{model}: the {where} has tensor {got.name!r} {got.dtype} {list(got.shape)}, "
            f"expected {want.name!r} {want.dtype} {list(want.shape)}"
        )


def _golden_from(
    name: str,
    candidates: np.ndarray,
    saved_model: Any | None,
    xml: Path | None,
    expect: tuple[TensorSignature, TensorSignature] | None,
    wanted: int | None = None,
) -> tuple[Golden, Selection]:
    """Run every runtime configuration on the candidates and pick the golden samples."""
    from servelab.server.modelrepo.conversion import IRRunner

    # Every configuration a server may run: both runtimes, one sample and whole batches,
    # OpenVINO forced to FP32 and with the CPU plugin's default precision (bf16 where
    # the CPU has it). Labels are "<runtime>_<precision>_b<batch>".
    others: dict[str, np.ndarray] = {}
    reference: np.ndarray | None = None
    batched = min(len(candidates), 16)
    if saved_model is not None:
        reference = saved_model(candidates, batch=batched)
        others["tensorflow_f32_b1"] = saved_model(candidates, batch=1)
        input_sig, output_sig = saved_model.input, saved_model.output
    if xml is not None:
        f32 = IRRunner(xml, force_f32=True)
        default = IRRunner(xml, force_f32=False)
        if expect is not None:
            _expect_signature(name, "IR", f32.input, expect[0])
            _expect_signature(name, "IR", f32.output, expect[1])
        f32_out = f32(candidates)
        if reference is None:
            reference = f32_out
            input_sig, output_sig = f32.input, f32.output
        else:
            others["openvino_f32_b1"] = f32_out
        others[f"openvino_f32_b{batched}"] = f32(candidates, batch=batched)
        if default.precision != "f32":
            others[f"openvino_{default.precision}_b1"] = default(candidates)
            others[f"openvino_{default.precision}_b{batched}"] = default(candidates, batch=batched)
    if reference is None:
        raise ModelRepoInputError(f"{name}: neither a SavedModel nor an IR to take samples from")
    spec_wanted = wanted if wanted is not None else _wanted_samples(name)
    exact = {label: MAX_F32_DIFF for label in others if "_f32_" in label}
    selection = select_golden(name, reference, others, spec_wanted, max_atol=MAX_ATOL, exact=exact)
    golden = Golden(
        model=name,
        input_name=input_sig.name,
        output_name=output_sig.name,
        inputs=candidates[selection.indices],
        outputs=reference[selection.indices],
        atol=selection.atol,
        rtol=selection.rtol,
    )
    return golden, selection


def _wanted_samples(name: str) -> int:
    spec = KNOWN_MODELS.get(name)
    return spec.golden_samples if spec is not None else USER_GOLDEN_SAMPLES


USER_GOLDEN_SAMPLES = 4
USER_GOLDEN_CANDIDATES = 16
USER_GOLDEN_SEED = 7


def _install(
    root: Path,
    staging: Path,
    *,
    name: str,
    golden: Golden,
    selection: Selection,
    has_saved_model: bool,
    has_ir: bool,
    source: str,
    spec_json: dict[str, Any],
    digest: str,
    versions: dict[str, str],
    seconds: float,
    origin: dict[str, str],
) -> ModelEntry:
    """Move the staged files into the layout, replacing the model's previous files."""
    written: list[Path] = []
    tf_dir = root / "tf" / name / "1"
    ov_dir = root / "ov" / name / "1"
    golden_path = root / "golden" / f"{name}.npz"
    for target, present, staged in (
        (tf_dir, has_saved_model, staging / "tf"),
        (ov_dir, has_ir, staging / "ov"),
    ):
        if target.exists():
            shutil.rmtree(target)
        if present:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            _make_readable(target)
            written.append(target)
    write_golden(golden_path, golden)
    written.append(golden_path)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return ModelEntry(
        name=name,
        source=source,
        spec=spec_json,
        spec_hash=digest,
        versions=versions,
        saved_model=rel(tf_dir) if has_saved_model else None,
        ir=rel(ov_dir / "model.xml") if has_ir else None,
        golden=GoldenRecord(
            path=rel(golden_path),
            samples=golden.samples,
            atol=golden.atol,
            rtol=golden.rtol,
            min_top1_margin=selection.min_margin,
            max_abs_diff=selection.max_abs_diff,
            source="saved_model" if has_saved_model else "ir",
        ),
        files=file_records(root, written),
        build_seconds=seconds,
        origin=origin,
    )


def _make_readable(path: Path) -> None:
    """Model servers in containers run as other users: directories 0755, files 0644."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


# ---------------------------------------------------------------------------
# User-supplied models


def add_user_model(
    repo: Path | str,
    name: str,
    *,
    saved_model: Path | str | None = None,
    ir: Path | str | None = None,
    log: Log = _quiet,
) -> ModelOutcome:
    """Copy a user's SavedModel and/or IR into the repository layout under `name`.

    A SavedModel without an IR is converted; the golden samples come from the
    SavedModel when there is one, else from the IR on FP32. The entry is marked
    user-supplied and `build_repository` never rebuilds it.
    """
    root = Path(repo)
    if not USER_NAME.match(name):
        raise ModelRepoInputError(
            f"model name {name!r} is not usable; use letters, digits, '_', '.', '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if name in KNOWN_MODELS:
        raise ModelRepoInputError(
            f"model name {name!r} is a model servelab builds; give your model another name"
        )
    if saved_model is None and ir is None:
        raise ModelRepoInputError(f"model {name!r}: give --saved-model DIR, --ir DIR, or both")
    sm_dir = _find_saved_model(Path(saved_model)) if saved_model is not None else None
    ir_xml = _find_user_ir(Path(ir)) if ir is not None else None
    _prepare_root(root)
    versions = tool_versions()
    sources = [p for p in (sm_dir, ir_xml) if p is not None]
    content = _content_hash(sources)
    spec_json: dict[str, Any] = {"architecture": "user", "content_sha256": content}
    with exclusive(root / LOCK_FILE):
        manifest = load_manifest(root)
        existing = manifest.models.get(name)
        if (
            existing is not None
            and existing.user_supplied
            and existing.spec.get("content_sha256") == content
            and existing.versions == versions
            and existing.files_intact(root)
        ):
            return ModelOutcome(name, "unchanged", 0.0, existing.spec_hash)
        started = time.monotonic()
        with _staging(root, name) as staging:
            golden, selection, spec_json = _stage_user_model(
                name, staging, sm_dir, ir_xml, spec_json, log
            )
            digest = spec_hash(spec_json, versions)
            entry = _install(
                root,
                staging,
                name=name,
                golden=golden,
                selection=selection,
                has_saved_model=sm_dir is not None,
                has_ir=True,
                source="user",
                spec_json=spec_json,
                digest=digest,
                versions=versions,
                seconds=time.monotonic() - started,
                origin={
                    k: str(v.resolve())
                    for k, v in (("saved_model", sm_dir), ("ir", ir_xml))
                    if v is not None
                },
            )
        manifest.models[name] = entry
        save_manifest(root, manifest)
    return ModelOutcome(name, "added", entry.build_seconds, entry.spec_hash)


def _stage_user_model(
    name: str,
    staging: Path,
    sm_dir: Path | None,
    ir_xml: Path | None,
    spec_json: dict[str, Any],
    log: Log,
) -> tuple[Golden, Selection, dict[str, Any]]:
    from servelab.server.modelrepo.conversion import IRRunner, convert_saved_model

    runner = None
    if sm_dir is not None:
        from servelab.server.modelrepo.exporting import SavedModelRunner

        shutil.copytree(sm_dir, staging / "tf")
        runner = SavedModelRunner(staging / "tf")
        in_sig, out_sig = runner.input, runner.output
    if ir_xml is not None:
        (staging / "ov").mkdir()
        shutil.copyfile(ir_xml, staging / "ov" / "model.xml")
        shutil.copyfile(ir_xml.with_suffix(".bin"), staging / "ov" / "model.bin")
    else:
        assert runner is not None
        log(f"{name}: converting the SavedModel to OpenVINO IR")
        convert_saved_model(staging / "tf", staging / "ov", in_sig.name, out_sig.name)
    xml = staging / "ov" / "model.xml"
    if runner is None:
        probe = IRRunner(xml, force_f32=True)
        in_sig, out_sig = probe.input, probe.output
    if in_sig.dtype != "float32" or any(d < 0 for d in in_sig.shape[1:]) or not in_sig.shape:
        raise ModelRepoInputError(
            f"model {name!r}: input {in_sig.name!r} is {in_sig.dtype} {list(in_sig.shape)}; "
            "servelab needs float32 with a batch dimension first and fixed other dimensions"
        )
    spec_json = {**spec_json, "input": in_sig.to_json(), "output": out_sig.to_json()}
    candidates = candidate_inputs(in_sig.shape[1:], USER_GOLDEN_CANDIDATES, USER_GOLDEN_SEED)
    golden, selection = _golden_from(
        name, candidates, runner, xml, expect=None, wanted=USER_GOLDEN_SAMPLES
    )
    return golden, selection, spec_json


def _find_saved_model(path: Path) -> Path:
    if not path.is_dir():
        raise ModelRepoInputError(
            f"SavedModel directory {path} does not exist; give the directory holding "
            "saved_model.pb (or its parent with numeric version subdirectories)"
        )
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    for version in reversed(versions):
        if (version / "saved_model.pb").is_file():
            return version
    raise ModelRepoInputError(
        f"no saved_model.pb in {path} or its numeric version subdirectories; "
        "give a SavedModel directory"
    )


def _find_user_ir(path: Path) -> Path:
    from servelab.server.modelrepo.conversion import find_ir

    if not path.is_dir():
        raise ModelRepoInputError(
            f"IR directory {path} does not exist; give the directory holding model.xml "
            "and model.bin (or its parent with numeric version subdirectories)"
        )
    xml = find_ir(path)
    if not xml.with_suffix(".bin").is_file():
        raise ModelRepoInputError(f"{xml} has no {xml.with_suffix('.bin').name} beside it")
    return xml


def _content_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for base in paths:
        files = [base, base.with_suffix(".bin")] if base.is_file() else sorted(base.rglob("*"))
        for file in files:
            if file.is_file():
                rel = file.name if base.is_file() else file.relative_to(base).as_posix()
                digest.update(f"{rel}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()
