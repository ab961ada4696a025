"""A real model server in a subprocess (``python -m model_server``) for the protocol tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ModelServerProcess:
    """Starts and stops one server; ``client`` talks to it."""

    def __init__(self, var_dir: Path, **settings: str) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "BITBUDDIES_VAR_DIR": str(var_dir),
            "BITBUDDIES_MODEL_SERVER_HOST": "127.0.0.1",
            "BITBUDDIES_MODEL_SERVER_PORT": str(self.port),
            "BITBUDDIES_MODEL_SERVER_WORKERS": "2",
            **{f"BITBUDDIES_{k.upper()}": v for k, v in settings.items()},
        }
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> "ModelServerProcess":
        self.process = subprocess.Popen([sys.executable, "-m", "model_server"], cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited with {self.process.returncode}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("model server did not become healthy in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.client.close()

    # -- protocol helpers -------------------------------------------------------------------
    def submit(self, model_id: str, body: dict, headers: dict | None = None) -> dict:
        response = self.client.post(f"/{model_id}", json=body, headers=headers or {})
        assert response.status_code == 200, response.text
        return response.json()

    def status(self, submitted: dict, logs: bool = False) -> httpx.Response:
        return self.client.get(submitted["status_url"], params={"logs": 1} if logs else None)

    def wait_for(self, submitted: dict, wanted: str = "COMPLETED", timeout: float = 60,
                 headers: dict | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(submitted["status_url"], params={"logs": 1}, headers=headers or {})
            body = response.json()
            if body["status"] == wanted:
                return body
            time.sleep(0.05)
        raise AssertionError(f"{submitted['request_id']} not {wanted} after {timeout} s: {body}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ModelServerProcess]:
    """One server shared by a module's tests (start-up costs ~1-2 s); faults are cleared after each test."""
    srv = ModelServerProcess(tmp_path_factory.mktemp("model-server")).start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def clean_server(server: ModelServerProcess) -> Iterator[ModelServerProcess]:
    assert server.client.post("/_admin/faults", json={}).status_code == 200
    assert server.client.post("/_admin/reset").status_code == 200
    yield server
    server.client.post("/_admin/faults", json={})
