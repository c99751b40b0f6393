"""The wire contract: the TF Serving gRPC API subset that clients and refserver speak.

`tfserving_pb2` holds the messages (generated from `tfserving.proto` by
`make proto`), `api` binds them to TF Serving's method paths, and `tensors`
converts between NumPy arrays and `TensorProto`. Nothing here imports TensorFlow.
"""
