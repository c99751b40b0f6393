"""REPO/manifest.json: what was built, from which spec, and the files it wrote."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.server.modelrepo.errors import ModelRepoInputError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the repository root
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class GoldenRecord:
    path: str
    samples: int
    atol: float
    rtol: float
    min_top1_margin: float
    max_abs_diff: dict[str, float]  # runtime configuration -> largest |difference| measured
    source: str  # "saved_model" or "ir"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str  # "built" or "user"
    spec: dict[str, Any]
    spec_hash: str
    versions: dict[str, str]
    saved_model: str | None  # relative path of the version directory, or None
    ir: str | None  # relative path of model.xml, or None
    golden: GoldenRecord
    files: list[FileRecord]
    build_seconds: float
    origin: dict[str, str] = field(default_factory=dict)  # user models: where they came from

    @property
    def user_supplied(self) -> bool:
        return self.source == "user"

    def files_intact(self, root: Path) -> bool:
        """Every recorded file exists with its recorded size (cheap; no hashing)."""
        for record in self.files:
            try:
                if (root / record.path).stat().st_size != record.size_bytes:
                    return False
            except OSError:
                return False
        return True


@dataclass
class Manifest:
    models: dict[str, ModelEntry] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT


def load_manifest(repo: Path | str) -> Manifest:
    """The repository's manifest; an empty one when the repository has none yet."""
    path = Path(repo) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Manifest()
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelRepoInputError(
            f"{path} is not a readable manifest ({exc}); remove it to rebuild the repository"
        ) from exc
    if raw.get("format") != MANIFEST_FORMAT:
        # An older layout: treat as empty so everything is rebuilt and rewritten.
        return Manifest()
    models = {}
    for name, entry in raw.get("models", {}).items():
        golden = entry["golden"]
        models[name] = ModelEntry(
            name=name,
            source=entry["source"],
            spec=entry["spec"],
            spec_hash=entry["spec_hash"],
            versions=entry["versions"],
            saved_model=entry.get("saved_model"),
            ir=entry.get("ir"),
            golden=GoldenRecord(
                path=golden["path"],
                samples=int(golden["samples"]),
                atol=float(golden["atol"]),
                rtol=float(golden["rtol"]),
                min_top1_margin=float(golden["min_top1_margin"]),
                max_abs_diff={k: float(v) for k, v in golden["max_abs_diff"].items()},
                source=golden["source"],
            ),
            files=[
                FileRecord(f["path"], int(f["size_bytes"]), f["sha256"]) for f in entry["files"]
            ],
            build_seconds=float(entry["build_seconds"]),
            origin=dict(entry.get("origin", {})),
        )
    return Manifest(models=models)


def _entry_json(entry: ModelEntry) -> dict[str, Any]:
    golden = entry.golden
    return {
        "source": entry.source,
        "spec": entry.spec,
        "spec_hash": entry.spec_hash,
        "versions": entry.versions,
        "saved_model": entry.saved_model,
        "ir": entry.ir,
        "golden": {
            "path": golden.path,
            "samples": golden.samples,
            "atol": golden.atol,
            "rtol": golden.rtol,
            "min_top1_margin": golden.min_top1_margin,
            "max_abs_diff": golden.max_abs_diff,
            "source": golden.source,
        },
        "files": [
            {"path": f.path, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in entry.files
        ],
        "build_seconds": round(entry.build_seconds, 3),
        "origin": entry.origin,
    }


def save_manifest(repo: Path, manifest: Manifest) -> None:
    """Write atomically; models sorted so that equal manifests are equal bytes."""
    data = {
        "format": manifest.format,
        "models": {name: _entry_json(manifest.models[name]) for name in sorted(manifest.models)},
    }
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    path = repo / MANIFEST_FILE
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=repo)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(root: Path, paths: list[Path]) -> list[FileRecord]:
    """Size and sha256 of every regular file under `paths` (files or directories)."""
    records = []
    for base in paths:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for file in files:
            records.append(
                FileRecord(
                    path=file.relative_to(root).as_posix(),
                    size_bytes=file.stat().st_size,
                    sha256=sha256_file(file),
                )
            )
    return records
