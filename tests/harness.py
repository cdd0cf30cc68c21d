"""A real Headwater server in a child process, as a user would start it, for integration tests."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

SIGNING_KEY = "signkey-test-" + "ab" * 32
EVENT_KEY = "test-event-key"
#: Fixed production key material for tests (never use these anywhere else).
ENCRYPTION_KEYS = "test1:" + base64.b64encode(bytes(range(32))).decode()
BLIND_INDEX_KEY = base64.b64encode(bytes(range(100, 132))).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        db_url: str | None = None,
        production: bool = False,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
        discovery: bool = False,
        signing_key: str = SIGNING_KEY,
        signing_key_fallback: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.db_url = db_url
        self.production = production
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        if production:
            self.env.setdefault("HEADWATER_ENCRYPTION_KEYS", ENCRYPTION_KEYS)
            self.env.setdefault("HEADWATER_BLIND_INDEX_KEY", BLIND_INDEX_KEY)
        self.extra_args = extra_args or []
        #: Dev servers probe this machine's usual ports for apps; tests must not sync whatever
        #: runs there, so discovery is off unless a test asks for it.
        self.discovery = discovery
        self.signing_key = signing_key
        self.signing_key_fallback = signing_key_fallback
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    def command(self) -> list[str]:
        mode = "start" if self.production else "dev"
        args = [sys.executable, "-m", "headwater", mode, "--host", "127.0.0.1"]
        args += [
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
        ]
        if self.db_url:
            args += ["--db", self.db_url]
        if self.production:
            args += ["--event-key", EVENT_KEY, "--signing-key", self.signing_key]
            if self.signing_key_fallback:
                args += ["--signing-key-fallback", self.signing_key_fallback]
        elif not self.discovery:
            args.append("--no-discovery")
        return args + self.extra_args

    def start(self, timeout: float = 20.0) -> RunningServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power cut of the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running_server(data_dir: Path, **kwargs: object) -> Iterator[RunningServer]:
    server = RunningServer(data_dir, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
