"""Libraries with known vulnerabilities below these versions are never installed."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from packaging.version import Version

MINIMUM_SAFE = {"starlette": "0.49.1", "python-multipart": "0.0.27", "pyjwt": "2.10.1"}


@pytest.mark.parametrize(("package", "minimum"), sorted(MINIMUM_SAFE.items()))
def test_installed_versions_are_at_least_the_safe_ones(package: str, minimum: str) -> None:
    assert Version(version(package)) >= Version(minimum)
