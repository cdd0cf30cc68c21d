"""The official SDKs, installed once per test session (see tests/e2e/official_sdks.py)."""

from __future__ import annotations

import pytest

from tests.e2e.official_sdks import InstalledSdk, install_inngest_js, install_inngest_py


@pytest.fixture(scope="session")
def inngest_js(tmp_path_factory: pytest.TempPathFactory) -> InstalledSdk:
    return install_inngest_js(tmp_path_factory.mktemp("inngest-js"))


@pytest.fixture(scope="session")
def inngest_py(tmp_path_factory: pytest.TempPathFactory) -> InstalledSdk:
    return install_inngest_py(tmp_path_factory.mktemp("inngest-py"))
