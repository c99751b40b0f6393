"""The ResNets build with seeded random weights and golden samples both runtimes meet (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servelab.server.modelrepo import build_repository, load_golden, load_manifest


@pytest.mark.slow
@pytest.mark.parametrize(
    "model", ["resnet_v1_50", "resnet_v2_50", "resnet_v1_152", "resnet_v2_152"]
)
def test_resnet_builds_and_ir_meets_golden(model: str, tmp_path: Path) -> None:
    import openvino as ov

    report = build_repository(tmp_path, [model])
    assert report.built == [model]
    entry = load_manifest(tmp_path).models[model]
    golden = load_golden(tmp_path / entry.golden.path)
    print(
        f"{model}: built in {report.outcomes[0].seconds:.1f} s, atol {golden.atol:g}, "
        f"min top-1 margin {entry.golden.min_top1_margin:.3f}, diffs {entry.golden.max_abs_diff}"
    )
    assert golden.inputs.shape == (golden.samples, 224, 224, 3)
    assert golden.outputs.shape == (golden.samples, 1000)
    assert np.isfinite(golden.outputs).all()
    top2 = np.sort(golden.outputs, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 5 * golden.atol).all()
    compiled = ov.Core().compile_model(str(tmp_path / entry.ir), "CPU")
    inputs, _ = golden.batch(3)
    assert golden.matches(compiled({"input": inputs})["probabilities"]).all()
