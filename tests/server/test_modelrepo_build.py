"""The tiny model builds into the agreed layout, and both formats agree on its golden samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from servelab.server.modelrepo import load_golden, load_manifest


def test_tiny_repository_layout(tiny_repo: Path) -> None:
    assert (tiny_repo / "tf" / "tiny" / "1" / "saved_model.pb").is_file()
    assert (tiny_repo / "ov" / "tiny" / "1" / "model.xml").is_file()
    assert (tiny_repo / "ov" / "tiny" / "1" / "model.bin").is_file()
    manifest = json.loads((tiny_repo / "manifest.json").read_text())
    entry = manifest["models"]["tiny"]
    assert entry["source"] == "built"
    assert entry["spec"]["input"] == {"name": "input", "dtype": "float32", "shape": [-1, 32, 32, 3]}
    assert entry["spec"]["output"] == {
        "name": "probabilities",
        "dtype": "float32",
        "shape": [-1, 10],
    }
    recorded = {f["path"] for f in entry["files"]}
    assert "golden/tiny.npz" in recorded
    assert "ov/tiny/1/model.xml" in recorded
    assert "tf/tiny/1/saved_model.pb" in recorded


def test_golden_file_follows_the_contract(tiny_repo: Path) -> None:
    with np.load(tiny_repo / "golden" / "tiny.npz") as raw:
        assert set(raw.files) == {
            "inputs",
            "outputs",
            "input_name",
            "output_name",
            "model",
            "atol",
            "rtol",
        }
        assert raw["inputs"].dtype == np.float32
        assert raw["outputs"].dtype == np.float32
        assert raw["input_name"].shape == ()
        assert str(raw["model"]) == "tiny"
    golden = load_golden(tiny_repo / "golden" / "tiny.npz")
    assert golden.inputs.shape[1:] == (32, 32, 3)
    assert golden.outputs.shape == (golden.samples, 10)
    assert golden.input_name == "input"
    assert golden.output_name == "probabilities"
    np.testing.assert_allclose(golden.outputs.sum(axis=1), 1.0, rtol=1e-5)
    top2 = np.sort(golden.outputs, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 5 * golden.atol).all()
    assert load_manifest(tiny_repo).models["tiny"].golden.atol == golden.atol


def test_both_formats_match_the_golden_outputs(tiny_repo: Path) -> None:
    import openvino as ov
    import tensorflow as tf

    golden = load_golden(tiny_repo / "golden" / "tiny.npz")
    loaded = tf.saved_model.load(str(tiny_repo / "tf" / "tiny" / "1"))
    serve = loaded.signatures["serving_default"]
    tf_out = serve(input=tf.constant(golden.inputs))["probabilities"].numpy()
    np.testing.assert_allclose(tf_out, golden.outputs, atol=golden.atol, rtol=golden.rtol)

    core = ov.Core()
    model = core.read_model(str(tiny_repo / "ov" / "tiny" / "1" / "model.xml"))
    assert model.inputs[0].get_names() == {"input"}
    assert model.outputs[0].get_names() == {"probabilities"}
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    for config in ({}, {"INFERENCE_PRECISION_HINT": "f32"}):
        compiled = core.compile_model(model, "CPU", config)
        # The whole golden set as one batch, then a batch built cyclically as clients do.
        ov_out = compiled({"input": golden.inputs})["probabilities"]
        np.testing.assert_allclose(ov_out, golden.outputs, atol=golden.atol, rtol=golden.rtol)
        inputs, expected = golden.batch(golden.samples + 3)
        assert golden.matches(compiled({"input": inputs})["probabilities"]).all()
        assert (expected[golden.samples :] == golden.outputs[:3]).all()


def test_other_weights_fail_verification(tiny_repo: Path, tiny_repo_other_weights: Path) -> None:
    golden = load_golden(tiny_repo / "golden" / "tiny.npz")
    other = load_golden(tiny_repo_other_weights / "golden" / "tiny.npz")
    manifest = load_manifest(tiny_repo_other_weights)
    assert (
        manifest.models["tiny"].spec["seed"] != load_manifest(tiny_repo).models["tiny"].spec["seed"]
    )
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(tiny_repo_other_weights / "ov" / "tiny" / "1" / "model.xml"), "CPU"
    )
    served = compiled({"input": golden.inputs})["probabilities"]
    assert not golden.matches(served).any()
    assert other.outputs.shape == golden.outputs.shape
