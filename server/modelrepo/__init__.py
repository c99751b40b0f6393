"""The model repository: built or user-supplied models in both formats, with golden samples.

Importing this package is cheap: TensorFlow and OpenVINO load only when a model
is built, converted or measured.
"""

from servelab.server.modelrepo.builder import (
    BuildReport,
    ModelOutcome,
    add_user_model,
    build_repository,
)
from servelab.server.modelrepo.catalog import KNOWN_MODELS, ModelSpec, TensorSignature
from servelab.server.modelrepo.errors import (
    ModelBuildError,
    ModelRepoError,
    ModelRepoInputError,
)
from servelab.server.modelrepo.golden import Golden, load_golden
from servelab.server.modelrepo.manifest import Manifest, ModelEntry, load_manifest

__all__ = [
    "KNOWN_MODELS",
    "BuildReport",
    "Golden",
    "Manifest",
    "ModelBuildError",
    "ModelEntry",
    "ModelOutcome",
    "ModelRepoError",
    "ModelRepoInputError",
    "ModelSpec",
    "TensorSignature",
    "add_user_model",
    "build_repository",
    "load_golden",
    "load_manifest",
]
