"""Shared test helpers: where the test applications live."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
BASIC_APP = str(TESTS / "apps" / "basic")


@pytest.fixture(scope="session")
def basic_app() -> str:
    """Directory of the shared test application (method_module=methods)."""
    return BASIC_APP
