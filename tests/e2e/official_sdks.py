"""Installing the official Inngest SDKs from their registries into temporary folders.

npm `inngest@4` (latest 4.x) goes into a folder with its own package.json; PyPI `inngest` (latest)
and FastAPI go into `<folder>/site` with `pip --target`, never into the test venv. Each is
installed once per session by the fixtures of tests/e2e/conftest.py. Without node/npm or a
reachable registry the tests skip locally and fail in CI (`CI` set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL_TIMEOUT_S = 300


def unavailable(message: str) -> NoReturn:
    """Skip locally; in CI the SDK tests must run, so a missing registry or tool is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the official-SDK tests must run)")
    pytest.skip(f"{message}; official-SDK tests skipped (they fail instead when CI is set)")


def tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class InstalledSdk:
    language: str  # "ts" or "py"
    version: str
    #: node_modules sits here (ts); the packages are in `folder / "site"` (py).
    folder: Path

    @property
    def python_path(self) -> str:
        return str(self.folder / "site")


def _install(command: list[str], what: str, cwd: Path, registry: str) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        unavailable(f"`{what}` took over {INSTALL_TIMEOUT_S}s")
    if done.returncode != 0:
        unavailable(
            f"`{what}` failed (is the {registry} reachable?):\n{tail(done.stdout + done.stderr)}"
        )


def install_inngest_js(folder: Path) -> InstalledSdk:
    """npm `inngest@4` into `folder`."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        unavailable("node and npm are needed to install the npm package `inngest`")
    # A package.json of its own, so npm installs here rather than in some enclosing project.
    (folder / "package.json").write_text('{"name": "headwater-e2e", "private": true}\n')
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "inngest@4"]
    _install(command, "npm install inngest@4", folder, "npm registry")
    manifest = json.loads((folder / "node_modules" / "inngest" / "package.json").read_text())
    version = str(manifest["version"])
    assert version.startswith("4."), f"npm gave inngest {version}, not a 4.x release"
    return InstalledSdk("ts", version, folder)


def install_inngest_py(folder: Path) -> InstalledSdk:
    """PyPI `inngest` (latest) and `fastapi` into `folder/site`."""
    target = folder / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)]
    _install([*command, "inngest", "fastapi"], "pip install inngest fastapi", folder, "PyPI")
    versions = [p.name for p in target.glob("inngest-*.dist-info")]
    assert len(versions) == 1, f"expected one inngest dist-info in {target}, found {versions}"
    version = versions[0].removeprefix("inngest-").removesuffix(".dist-info")
    return InstalledSdk("py", version, folder)
