"""SavedModel -> OpenVINO IR conversion and in-process IR inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servelab.server.modelrepo.catalog import TensorSignature
from servelab.server.modelrepo.errors import ModelRepoInputError

IR_FILE = "model.xml"


def convert_saved_model(
    saved_model: Path, target_dir: Path, input_name: str, output_name: str
) -> Path:
    """Convert a SavedModel to an FP32 IR with a dynamic batch and the given tensor names."""
    import openvino as ov

    model = ov.convert_model(str(saved_model))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelRepoInputError(
            f"{saved_model} converts to {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; servelab needs exactly one of each"
        )
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() > 0 and not shape[0].is_dynamic:
        shape[0] = ov.Dimension(-1)
        model.reshape({model.inputs[0]: shape})
    model.inputs[0].get_tensor().set_names({input_name})
    model.outputs[0].get_tensor().set_names({output_name})
    target_dir.mkdir(parents=True, exist_ok=True)
    xml = target_dir / IR_FILE
    # FP32 weights: the golden tolerance is measured against these exact bytes.
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


class IRRunner:
    """Runs an IR on the CPU plugin, either with the plugin's defaults or forced to FP32."""

    def __init__(self, xml: Path, *, force_f32: bool) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as exc:
            raise ModelRepoInputError(
                f"{xml} is not a readable OpenVINO IR ({exc}); expected model.xml with model.bin"
            ) from exc
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelRepoInputError(
                f"IR {xml} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                "servelab needs exactly one of each"
            )
        config: dict[str, Any] = {}
        if force_f32:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self._compiled = core.compile_model(model, "CPU", config)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.input = _signature(model.inputs[0])
        self.output = _signature(model.outputs[0])

    def __call__(self, inputs: np.ndarray, batch: int = 1) -> np.ndarray:
        request = self._compiled.create_infer_request()
        chunks = []
        for start in range(0, len(inputs), batch):
            result = request.infer({0: inputs[start : start + batch]})
            chunks.append(np.asarray(result[0]).copy())
        return np.concatenate(chunks).astype(np.float32, copy=False)


def _signature(port: Any) -> TensorSignature:
    names = sorted(port.get_names())
    shape = port.get_partial_shape()
    dims: tuple[int, ...] = ()
    if shape.rank.is_static:
        dims = tuple(-1 if d.is_dynamic else d.get_length() for d in shape)
    return TensorSignature(names[0] if names else "", port.get_element_type().to_dtype().name, dims)


def find_ir(directory: Path) -> Path:
    """The model.xml in `directory` or in its highest numeric version subdirectory."""
    if (directory / IR_FILE).is_file():
        return directory / IR_FILE
    versions = sorted(
        (p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    for version in reversed(versions):
        if (version / IR_FILE).is_file():
            return version / IR_FILE
    xmls = sorted(directory.glob("*.xml"))
    if len(xmls) == 1 and xmls[0].with_suffix(".bin").is_file():
        return xmls[0]
    raise ModelRepoInputError(
        f"no OpenVINO IR in {directory}; expected {IR_FILE} (+ model.bin) there "
        "or in a numeric version subdirectory such as 1/"
    )
