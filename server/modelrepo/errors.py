"""Errors raised by the model repository.

`ModelRepoInputError` is bad input from the user (exit code 2); `ModelBuildError`
is a build that ran but produced something that must not be served (exit code 1).
"""

from __future__ import annotations


class ModelRepoError(Exception):
    """Base class of every error the model repository raises on purpose."""

    exit_code = 1


class ModelRepoInputError(ModelRepoError):
    """The request names something that does not exist or cannot be used."""

    exit_code = 2


class ModelBuildError(ModelRepoError):
    """A model was built but failed its own checks (e.g. the IR disagrees with the SavedModel)."""

    exit_code = 1
