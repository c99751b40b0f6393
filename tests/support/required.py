"""What a test needs from this machine: without it, a skip that prints why, except in CI.

CI (the CI variable set, as CI services and `bash .ci/run` do, or
SERVELAB_REQUIRE_DOCKER=1, which .ci/run exports) has everything `make test` installs,
so there the same reason fails the test instead of letting it pass unrun.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "") not in ("", "false") or (
        os.environ.get("SERVELAB_REQUIRE_DOCKER") == "1"
    )


def missing(reason: str, in_ci_message: str | None = None) -> NoReturn:
    """Skip with `reason` printed; in CI, fail with `in_ci_message` (or the reason)."""
    if in_ci():
        pytest.fail(in_ci_message or f"{reason}; CI must run this test")
    print(f"SKIPPED: {reason}", file=sys.stderr)
    pytest.skip(reason)
