"""A second build changes nothing; a changed spec rebuilds only that model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from servelab.server.modelrepo import build_repository, load_golden, load_manifest


def _copy(repo: Path, target: Path) -> Path:
    shutil.copytree(repo, target, symlinks=True)
    return target


def _mtimes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def test_second_build_is_unchanged(tiny_repo: Path, tmp_path: Path) -> None:
    repo = _copy(tiny_repo, tmp_path / "repo")
    before = _mtimes(repo)
    manifest_bytes = (repo / "manifest.json").read_bytes()

    report = build_repository(repo, ["tiny"])

    assert [(o.name, o.status) for o in report.outcomes] == [("tiny", "unchanged")]
    assert report.built == []
    assert report.to_json()["changed"] is False
    assert _mtimes(repo) == before
    assert (repo / "manifest.json").read_bytes() == manifest_bytes


def test_changed_seed_rebuilds_and_damaged_files_rebuild(tiny_repo: Path, tmp_path: Path) -> None:
    repo = _copy(tiny_repo, tmp_path / "repo")
    old = load_golden(repo / "golden" / "tiny.npz")
    old_hash = load_manifest(repo).models["tiny"].spec_hash

    report = build_repository(repo, ["tiny"], seed=99)

    assert report.built == ["tiny"]
    entry = load_manifest(repo).models["tiny"]
    assert entry.spec["seed"] == 99
    assert entry.spec_hash != old_hash
    new = load_golden(repo / "golden" / "tiny.npz")
    assert not np.allclose(new.outputs[: old.samples], old.outputs[: new.samples])
    # The manifest lists exactly the files on disk, with their sizes.
    recorded = {f.path: f.size_bytes for f in entry.files}
    on_disk = {
        p.relative_to(repo).as_posix(): p.stat().st_size
        for sub in ("tf", "ov", "golden")
        for p in (repo / sub).rglob("*")
        if p.is_file()
    }
    assert recorded == on_disk

    # A file removed behind the manifest's back is noticed and the model rebuilt.
    (repo / "ov" / "tiny" / "1" / "model.bin").unlink()
    again = build_repository(repo, ["tiny"], seed=99)
    assert again.built == ["tiny"]
    assert (repo / "ov" / "tiny" / "1" / "model.bin").is_file()
    assert json.loads((repo / "manifest.json").read_text())["models"]["tiny"]["spec"]["seed"] == 99
