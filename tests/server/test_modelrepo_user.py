"""A user's own SavedModel or IR is copied in, recorded as user-supplied, never rebuilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servelab.server.modelrepo import (
    add_user_model,
    build_repository,
    load_golden,
    load_manifest,
)


def test_saved_model_is_added_converted_and_kept(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    outcome = add_user_model(repo, "mine", saved_model=tiny_repo / "tf" / "tiny")

    assert outcome.status == "added"
    entry = load_manifest(repo).models["mine"]
    assert entry.user_supplied
    assert entry.origin["saved_model"] == str((tiny_repo / "tf" / "tiny" / "1").resolve())
    assert (repo / "tf" / "mine" / "1" / "saved_model.pb").is_file()
    assert (repo / "ov" / "mine" / "1" / "model.xml").is_file()
    golden = load_golden(repo / "golden" / "mine.npz")
    assert (golden.model, golden.input_name, golden.output_name) == (
        "mine",
        "input",
        "probabilities",
    )
    assert entry.golden.source == "saved_model"

    again = add_user_model(repo, "mine", saved_model=tiny_repo / "tf" / "tiny")
    assert again.status == "unchanged"
    report = build_repository(repo, ["mine"])
    assert [(o.name, o.status) for o in report.outcomes] == [("mine", "user-supplied")]
    assert report.built == []


def test_ir_only_is_added_with_golden_from_the_ir(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    outcome = add_user_model(repo, "mine_ir", ir=tiny_repo / "ov" / "tiny" / "1")

    assert outcome.status == "added"
    entry = load_manifest(repo).models["mine_ir"]
    assert entry.saved_model is None
    assert entry.ir == "ov/mine_ir/1/model.xml"
    assert entry.golden.source == "ir"
    assert not (repo / "tf" / "mine_ir").exists()
    golden = load_golden(repo / "golden" / "mine_ir.npz")
    assert golden.outputs.shape == (golden.samples, 10)
    assert np.isfinite(golden.outputs).all()
