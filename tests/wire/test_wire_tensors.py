"""NumPy <-> TensorProto conversion and the method paths of the wire contract."""

import numpy as np
import pytest

from servelab.wire import api, tensors
from servelab.wire import tfserving_pb2 as pb


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "bool"]
)
def test_round_trip_keeps_values_dtype_and_shape(dtype):
    rng = np.random.default_rng(7)
    array = (rng.standard_normal((2, 3, 4)) * 50).astype(dtype)
    proto = tensors.to_tensor_proto(array)
    back = tensors.to_ndarray(pb.TensorProto.FromString(proto.SerializeToString()))
    assert back.dtype == array.dtype
    assert back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_encoding_uses_tensor_content_in_little_endian():
    proto = tensors.to_tensor_proto(np.array([1.0, 2.0], dtype=">f4"))
    assert proto.dtype == pb.DT_FLOAT
    assert [d.size for d in proto.tensor_shape.dim] == [2]
    assert proto.tensor_content == np.array([1.0, 2.0], dtype="<f4").tobytes()
    assert len(proto.float_val) == 0


def test_non_contiguous_arrays_are_encoded_in_logical_order():
    array = np.arange(12, dtype=np.float32).reshape(3, 4).T
    np.testing.assert_array_equal(tensors.to_ndarray(tensors.to_tensor_proto(array)), array)


def test_typed_value_fields_decode_like_tensor_content():
    proto = pb.TensorProto(dtype=pb.DT_FLOAT, tensor_shape=tensors.shape_proto([2, 2]))
    proto.float_val.extend([1, 2, 3, 4])
    np.testing.assert_array_equal(tensors.to_ndarray(proto), [[1, 2], [3, 4]])


def test_a_single_value_fills_the_tensor():
    proto = pb.TensorProto(dtype=pb.DT_INT32, tensor_shape=tensors.shape_proto([2, 3]))
    proto.int_val.append(5)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), np.full((2, 3), 5, np.int32))


def test_half_values_travel_as_their_bit_patterns():
    halves = np.array([0.5, -2.0], dtype=np.float16)
    proto = pb.TensorProto(dtype=pb.DT_HALF, tensor_shape=tensors.shape_proto([2]))
    proto.half_val.extend(halves.view(np.uint16).tolist())
    np.testing.assert_array_equal(tensors.to_ndarray(proto), halves)


def test_content_of_the_wrong_size_names_both_sizes():
    proto = pb.TensorProto(
        dtype=pb.DT_FLOAT, tensor_shape=tensors.shape_proto([2, 2]), tensor_content=b"\0" * 12
    )
    with pytest.raises(tensors.TensorError, match=r"holds 12 bytes.*needs 16"):
        tensors.to_ndarray(proto)


def test_unsupported_dtypes_are_named():
    with pytest.raises(tensors.TensorError, match="DT_STRING"):
        tensors.to_ndarray(pb.TensorProto(dtype=pb.DT_STRING))
    with pytest.raises(tensors.TensorError, match="complex64"):
        tensors.to_tensor_proto(np.zeros(2, dtype=np.complex64))


def test_method_paths_are_tf_servings():
    assert api.PREDICT == "/tensorflow.serving.PredictionService/Predict"
    assert api.GET_MODEL_METADATA == "/tensorflow.serving.PredictionService/GetModelMetadata"
    assert api.GET_MODEL_STATUS == "/tensorflow.serving.ModelService/GetModelStatus"


def test_message_limits_admit_a_batch_32_resnet_request():
    batch_32_bytes = 32 * 224 * 224 * 3 * 4
    limits = dict(api.CHANNEL_OPTIONS)
    assert limits["grpc.max_receive_message_length"] > batch_32_bytes
    assert limits["grpc.max_send_message_length"] > batch_32_bytes


def test_model_spec_sets_the_version_only_when_given():
    assert not api.model_spec("m").HasField("version")
    assert api.model_spec("m", 3).version.value == 3


def test_signature_def_map_round_trips_through_any_with_tf_servings_type_url():
    signatures = pb.SignatureDefMap()
    signatures.signature_def["serving_default"].inputs["input"].name = "input:0"
    response = pb.GetModelMetadataResponse()
    response.metadata[api.SIGNATURE_DEF_METADATA_FIELD].CopyFrom(
        api.pack_signature_def_map(signatures)
    )
    assert response.metadata["signature_def"].type_url.endswith(
        "tensorflow.serving.SignatureDefMap"
    )
    assert api.unpack_signature_def_map(response) == signatures


def test_metadata_without_signatures_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'signature_def'"):
        api.unpack_signature_def_map(pb.GetModelMetadataResponse())
