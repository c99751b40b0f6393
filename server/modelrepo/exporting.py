"""Keras model construction and SavedModel export (TensorFlow is imported lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servelab.server.modelrepo.catalog import ModelSpec, TensorSignature
from servelab.server.modelrepo.errors import ModelRepoInputError

if TYPE_CHECKING:
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIGNATURE_KEY = "serving_default"


def _keras() -> Any:
    import keras

    return keras


def build_keras_model(spec: ModelSpec) -> keras.Model:
    """A Keras model for `spec` with weights drawn from `spec.seed`."""
    keras = _keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    shape = (spec.image_size, spec.image_size, 3)
    if spec.architecture == "tiny":
        return _tiny(keras, shape, spec.classes)
    application = getattr(keras.applications, spec.architecture, None)
    if application is None:
        raise ModelRepoInputError(f"unknown architecture {spec.architecture!r} for {spec.name}")
    return application(weights=None, input_shape=shape, classes=spec.classes)


def _tiny(keras: Any, shape: tuple[int, int, int], classes: int) -> keras.Model:
    """Two strided tanh convolutions and a dense head: small, but every pixel matters.

    Centred inputs and tanh keep the predicted class varied across inputs; the
    logit scale gives clear top-1 margins even with random weights.
    """
    layers = keras.layers
    inputs = keras.Input(shape, name="input")
    x = layers.Rescaling(1.0, offset=-0.5)(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="tanh")(x)
    x = layers.Conv2D(16, 3, strides=2, activation="tanh")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes)(x)
    x = layers.Rescaling(TINY_LOGIT_SCALE)(x)
    outputs = layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny")


TINY_LOGIT_SCALE = 3.0


def export_saved_model(model: keras.Model, spec: ModelSpec, target: Path) -> None:
    """Write `model` as a SavedModel whose serving_default is input -> probabilities."""
    import tensorflow as tf

    keras = _keras()
    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's captured variables are saved anyway, and
    # tracking the model as well writes every weight twice (a 200 MB ResNet-50).
    input_name = spec.input.name
    output_name = spec.output.name

    def serve(images: Any) -> dict[str, Any]:
        return {output_name: model(images, training=False)}

    tensor_spec = tf.TensorSpec(list(_none_for_dynamic(spec.input.shape)), tf.float32, input_name)
    archive.add_endpoint(SIGNATURE_KEY, serve, input_signature=[tensor_spec])
    archive.write_out(str(target), verbose=False)


def _none_for_dynamic(shape: tuple[int, ...]) -> tuple[int | None, ...]:
    return tuple(None if d < 0 else d for d in shape)


class SavedModelRunner:
    """Runs the serving_default signature of a SavedModel in-process."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError) as exc:
            raise ModelRepoInputError(
                f"{path} is not a loadable SavedModel ({exc.__class__.__name__}); "
                "expected a directory holding saved_model.pb and variables/"
            ) from exc
        signatures = getattr(loaded, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise ModelRepoInputError(
                f"SavedModel {path} has no {SIGNATURE_KEY!r} signature "
                f"(it has {sorted(signatures)}); export it with a serving_default signature"
            )
        self._loaded = loaded  # keeps the variables alive
        self._function = signatures[SIGNATURE_KEY]
        _, kwargs = self._function.structured_input_signature
        outputs = self._function.structured_outputs
        if len(kwargs) != 1 or len(outputs) != 1:
            raise ModelRepoInputError(
                f"SavedModel {path} signature {SIGNATURE_KEY!r} has inputs {sorted(kwargs)} and "
                f"outputs {sorted(outputs)}; servelab needs exactly one input and one output"
            )
        (in_name, in_spec), (out_name, out_spec) = *kwargs.items(), *outputs.items()
        self.input = TensorSignature(in_name, in_spec.dtype.name, _dims(in_spec.shape))
        self.output = TensorSignature(out_name, out_spec.dtype.name, _dims(out_spec.shape))

    def __call__(self, inputs: np.ndarray, batch: int = 16) -> np.ndarray:
        chunks = []
        for start in range(0, len(inputs), batch):
            tensor = self._tf.constant(inputs[start : start + batch])
            result = self._function(**{self.input.name: tensor})
            chunks.append(result[self.output.name].numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)


def _dims(shape: Any) -> tuple[int, ...]:
    if shape.rank is None:
        return ()
    return tuple(-1 if d is None else int(d) for d in shape.as_list())
