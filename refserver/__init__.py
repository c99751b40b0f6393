"""refserver: an embedded reference model server speaking TF Serving's gRPC API.

It serves a model repository in the layout OpenVINO Model Server and TensorFlow
Serving share, on the OpenVINO runtime (a compiled model behind an async infer
queue) or the TensorFlow runtime (a SavedModel's serving_default signature).
Entry point: `servelab-refserver` (servelab.refserver.cli:main).
"""
