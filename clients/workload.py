"""What the pool sends and expects: the model's signature, the input batch, the checks.

Before any load starts, the parent asks the target for the model's metadata
(GetModelMetadata) and holds the chosen input to the signature, so that a wrong
target, model, batch size or input shape ends the run at once with a one-line
`BadInput` message instead of a window full of errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from servelab.clients.verify import ExpectedValues, OutputSpec
from servelab.wire import api, tensors
from servelab.wire import tfserving_pb2 as pb


class BadInput(Exception):
    """A problem with what the user asked for; the CLI prints it on one line, exit 2."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ModelSignature:
    model: str
    version: int | None  # the version the server reports, if it does
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Golden:
    """Golden samples as the model repository writes them (REPO/golden/<model>.npz)."""

    inputs: np.ndarray
    outputs: np.ndarray
    input_name: str
    output_name: str
    atol: float
    rtol: float

    @classmethod
    def load(cls, path: Path) -> Golden:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    inputs=np.asarray(data["inputs"]),
                    outputs=np.asarray(data["outputs"]),
                    input_name=str(data["input_name"]),
                    output_name=str(data["output_name"]),
                    atol=float(data["atol"]),
                    rtol=float(data["rtol"]),
                )
        except FileNotFoundError:
            raise BadInput(f"golden samples {path} do not exist") from None
        except (OSError, KeyError, ValueError) as error:
            raise BadInput(f"golden samples {path} are unreadable: {error}") from None


@dataclass(frozen=True)
class Workload:
    """Everything a worker needs to build its request and check the responses."""

    model: str
    version: int | None
    signature_name: str
    input_name: str
    batch: np.ndarray  # the input batch, [batch, ...]
    output: OutputSpec
    expected: ExpectedValues | None  # golden outputs for this batch, if the input is golden
    input_kind: str  # "golden", "random" or the .npy path


def _tensor_spec(name: str, info: pb.TensorInfo) -> TensorSpec:
    try:
        dtype = tensors.numpy_dtype(info.dtype)
    except tensors.TensorError as error:
        raise BadInput(f"tensor {name!r} of the model: {error}") from None
    return TensorSpec(name, dtype, tensors.shape_of(info.tensor_shape))


def fetch_signature(
    target: str,
    model: str,
    version: int | None,
    signature_name: str,
    connect_timeout_s: float,
) -> ModelSignature:
    """The model's signature as the target serves it; BadInput for any failure."""
    with grpc.insecure_channel(target, options=api.CHANNEL_OPTIONS) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=connect_timeout_s)
        except grpc.FutureTimeoutError:
            raise BadInput(
                f"cannot reach {target}: no gRPC connection within {connect_timeout_s:g} s"
            ) from None
        stub = api.PredictionServiceStub(channel)
        request = pb.GetModelMetadataRequest(
            model_spec=api.model_spec(model, version), metadata_field=["signature_def"]
        )
        try:
            response = stub.GetModelMetadata(request, timeout=connect_timeout_s)
        except grpc.RpcError as error:
            code = error.code()
            what = f"model {model!r}" + (f" version {version}" if version is not None else "")
            if code == grpc.StatusCode.NOT_FOUND:
                raise BadInput(f"{what} not found on {target}: {error.details()}") from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise BadInput(f"cannot reach {target}: {error.details()}") from None
            raise BadInput(
                f"GetModelMetadata for {what} on {target} failed: {code.name} {error.details()}"
            ) from None
    try:
        signatures = api.unpack_signature_def_map(response)
    except ValueError as error:
        raise BadInput(f"{target} gave no usable metadata for {model!r}: {error}") from None
    if signature_name not in signatures.signature_def:
        raise BadInput(
            f"model {model!r} has no signature {signature_name!r} "
            f"(it has {sorted(signatures.signature_def)})"
        )
    signature = signatures.signature_def[signature_name]
    served_version = (
        response.model_spec.version.value if response.model_spec.HasField("version") else version
    )
    return ModelSignature(
        model=model,
        version=served_version,
        inputs=tuple(_tensor_spec(n, i) for n, i in sorted(signature.inputs.items())),
        outputs=tuple(_tensor_spec(n, i) for n, i in sorted(signature.outputs.items())),
    )


def _pick(specs: tuple[TensorSpec, ...], name: str | None, kind: str, model: str) -> TensorSpec:
    names = [s.name for s in specs]
    if name is not None:
        for spec in specs:
            if spec.name == name:
                return spec
        raise BadInput(f"model {model!r} has no {kind} {name!r} (it has {names})")
    if len(specs) != 1:
        raise BadInput(f"model {model!r} has {len(specs)} {kind}s {names}; servelab-load sends one")
    return specs[0]


def _fit_batch(spec: TensorSpec, batch: int, model: str) -> None:
    if not spec.shape:
        raise BadInput(f"input {spec.name!r} of model {model!r} is a scalar; it has no batch")
    fixed = spec.shape[0]
    if fixed > 0 and batch > fixed:
        raise BadInput(
            f"batch {batch} is larger than model {model!r} allows "
            f"(input {spec.name!r} has a fixed batch dimension of {fixed})"
        )
    if fixed > 0 and batch != fixed:
        raise BadInput(f"model {model!r} takes batches of exactly {fixed}, not {batch}")


def _check_samples(spec: TensorSpec, samples: np.ndarray, source: str, model: str) -> None:
    """`samples` is [N, ...]; each sample must fit the input's non-batch dimensions."""
    want = spec.shape[1:]
    got = samples.shape[1:]
    if len(got) != len(want) or any(w >= 0 and w != g for g, w in zip(got, want, strict=True)):
        raise BadInput(
            f"{source} has sample shape {list(got)}; model {model!r} input {spec.name!r} "
            f"takes {list(spec.shape)} (batch first)"
        )
    if samples.dtype != spec.dtype:
        raise BadInput(
            f"{source} holds {samples.dtype}; model {model!r} input {spec.name!r} "
            f"takes {spec.dtype}"
        )


def _cyclic(samples: np.ndarray, batch: int) -> np.ndarray:
    """Row i of the batch is sample i % N."""
    return np.ascontiguousarray(samples[np.arange(batch) % len(samples)])


def build_workload(
    signature: ModelSignature,
    signature_name: str,
    batch: int,
    input_kind: str,
    golden: Golden | None,
    seed: int = 0,
) -> Workload:
    """The batch to send and the checks to apply; BadInput when they cannot fit the model."""
    model = signature.model
    in_name = golden.input_name if golden is not None and input_kind == "golden" else None
    out_name = golden.output_name if golden is not None and input_kind == "golden" else None
    in_spec = _pick(signature.inputs, in_name, "input", model)
    out_spec = _pick(signature.outputs, out_name, "output", model)
    _fit_batch(in_spec, batch, model)

    expected = None
    if input_kind == "golden":
        if golden is None:
            raise BadInput("golden input needs --model-repo or --golden (or --input random)")
        if golden.inputs.ndim < 1 or len(golden.inputs) == 0:
            raise BadInput("golden samples hold no inputs")
        _check_samples(in_spec, golden.inputs, "golden input", model)
        classes = out_spec.shape[1:]
        if (
            golden.outputs.ndim != 2
            or len(golden.outputs) != len(golden.inputs)
            or any(
                w >= 0 and w != g for g, w in zip(golden.outputs.shape[1:], classes, strict=False)
            )
        ):
            raise BadInput(
                f"golden outputs have shape {list(golden.outputs.shape)}; model {model!r} "
                f"output {out_spec.name!r} is {list(out_spec.shape)}"
            )
        array = _cyclic(golden.inputs, batch)
        expected = ExpectedValues(
            values=_cyclic(golden.outputs, batch), atol=golden.atol, rtol=golden.rtol
        )
    elif input_kind == "random":
        dims = in_spec.shape[1:]
        if any(d < 0 for d in dims):
            raise BadInput(
                f"input {in_spec.name!r} of model {model!r} has dynamic dimensions "
                f"{list(in_spec.shape)}; give an .npy file instead of random input"
            )
        rng = np.random.default_rng(seed)
        if np.issubdtype(in_spec.dtype, np.floating):
            array = rng.random((batch, *dims), dtype=np.float32).astype(in_spec.dtype)
        else:
            array = rng.integers(0, 2, size=(batch, *dims)).astype(in_spec.dtype)
    else:
        path = Path(input_kind)
        try:
            samples = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise BadInput(f"input file {path} does not exist") from None
        except (OSError, ValueError) as error:
            raise BadInput(f"input file {path} is not a readable .npy array: {error}") from None
        if samples.ndim == len(in_spec.shape) - 1:  # one sample without a batch dimension
            samples = samples[np.newaxis]
        if samples.ndim == 0 or len(samples) == 0:
            raise BadInput(f"input file {path} holds no samples")
        _check_samples(in_spec, samples, f"input file {path}", model)
        array = _cyclic(samples, batch)

    out_shape = (batch, *out_spec.shape[1:]) if out_spec.shape else ()
    return Workload(
        model=model,
        version=signature.version,
        signature_name=signature_name,
        input_name=in_spec.name,
        batch=array,
        output=OutputSpec(out_spec.name, out_spec.dtype, out_shape),
        expected=expected,
        input_kind=input_kind,
    )
