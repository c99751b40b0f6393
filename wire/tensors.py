"""NumPy arrays to and from `TensorProto`, the way TF Serving encodes them.

Arrays travel in `tensor_content` (raw little-endian bytes), which is what
`tf.make_tensor_proto` produces for numeric tensors and the cheapest to build and
parse. Decoding also accepts the typed repeated fields (`float_val`, ...) that
hand-written clients use, including TF's shorthand of one value for a whole tensor.
"""

from __future__ import annotations

import math

import numpy as np

from servelab.wire import tfserving_pb2 as pb

# DataType <-> NumPy, for the types the lab can carry in tensor_content.
_TO_NUMPY: dict[int, np.dtype] = {
    pb.DT_FLOAT: np.dtype("<f4"),
    pb.DT_DOUBLE: np.dtype("<f8"),
    pb.DT_HALF: np.dtype("<f2"),
    pb.DT_INT8: np.dtype("i1"),
    pb.DT_INT16: np.dtype("<i2"),
    pb.DT_INT32: np.dtype("<i4"),
    pb.DT_INT64: np.dtype("<i8"),
    pb.DT_UINT8: np.dtype("u1"),
    pb.DT_UINT16: np.dtype("<u2"),
    pb.DT_UINT32: np.dtype("<u4"),
    pb.DT_UINT64: np.dtype("<u8"),
    pb.DT_BOOL: np.dtype("?"),
}
_FROM_NUMPY: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _TO_NUMPY.items()}

# The typed repeated field that carries each DataType when tensor_content is empty.
_VALUE_FIELD: dict[int, str] = {
    pb.DT_FLOAT: "float_val",
    pb.DT_DOUBLE: "double_val",
    pb.DT_HALF: "half_val",
    pb.DT_INT8: "int_val",
    pb.DT_INT16: "int_val",
    pb.DT_INT32: "int_val",
    pb.DT_UINT8: "int_val",
    pb.DT_UINT16: "int_val",
    pb.DT_INT64: "int64_val",
    pb.DT_UINT32: "uint32_val",
    pb.DT_UINT64: "uint64_val",
    pb.DT_BOOL: "bool_val",
}


class TensorError(ValueError):
    """A TensorProto that cannot become an array (unsupported dtype, size mismatch)."""


def dtype_name(code: int) -> str:
    """`DT_FLOAT` for 1, and so on; the number itself if servelab does not know it."""
    try:
        return pb.DataType.Name(code)
    except ValueError:
        return f"DataType({code})"


def numpy_dtype(code: int) -> np.dtype:
    """The NumPy dtype of a DataType; TensorError if it has none here."""
    try:
        return _TO_NUMPY[code]
    except KeyError:
        raise TensorError(f"unsupported dtype {dtype_name(code)}") from None


def data_type(dtype: np.dtype | type | str) -> int:
    """The DataType of a NumPy dtype; TensorError if TF Serving has no such type."""
    key = np.dtype(dtype).newbyteorder("=")
    try:
        return _FROM_NUMPY[key]
    except KeyError:
        raise TensorError(f"no TF Serving DataType for NumPy dtype {key}") from None


def shape_proto(shape: tuple[int, ...] | list[int]) -> pb.TensorShapeProto:
    """A TensorShapeProto; -1 marks a dynamic dimension, as in TF's signatures."""
    return pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=int(s)) for s in shape])


def shape_of(proto: pb.TensorShapeProto) -> tuple[int, ...]:
    return tuple(d.size for d in proto.dim)


def fill_tensor_proto(proto: pb.TensorProto, array: np.ndarray) -> None:
    """Encode an array into an empty `proto` in place (a map entry of a response, say),
    as TF Serving does: dtype, shape, raw little-endian bytes in tensor_content."""
    array = np.asarray(array)
    code = data_type(array.dtype)
    wire = _TO_NUMPY[code]
    if array.dtype != wire or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=wire)
    proto.dtype = code
    proto.tensor_shape.dim.extend(pb.TensorShapeProto.Dim(size=int(s)) for s in array.shape)
    proto.tensor_content = array.tobytes()


def to_tensor_proto(array: np.ndarray) -> pb.TensorProto:
    """Encode an array as a new TensorProto (see fill_tensor_proto)."""
    proto = pb.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def to_ndarray(proto: pb.TensorProto) -> np.ndarray:
    """Decode a TensorProto into a read-only array over the bytes of tensor_content."""
    dtype = numpy_dtype(proto.dtype)
    shape = shape_of(proto.tensor_shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"tensor shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    # Each read of a bytes field copies it (600 KB for a ResNet input): read it once.
    content = proto.tensor_content
    if content:
        if len(content) != count * dtype.itemsize:
            raise TensorError(
                f"tensor_content holds {len(content)} bytes; "
                f"shape {list(shape)} of {dtype_name(proto.dtype)} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    values = getattr(proto, _VALUE_FIELD[proto.dtype])
    if proto.dtype == pb.DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=dtype)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1:  # TF's shorthand: one value fills the tensor
        return np.full(shape, flat[0], dtype=dtype)
    raise TensorError(
        f"tensor has {flat.size} values in {_VALUE_FIELD[proto.dtype]}; "
        f"shape {list(shape)} needs {count}"
    )
