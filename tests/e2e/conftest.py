"""The real stack for end-to-end tests: Airflow (api-server, scheduler, dag-processor, triggerer on
SQLite with LocalExecutor), the local model server and the API, started once per test session on
free ports with a private var dir, exactly as `make up` starts them."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ops.stack import LOAD_TEST_LIMITS, Stack, StackConfig, environment, initialise
from tests.fakes.pushover_server import FakePushover
from tests.fakes.stripe_server import FakeStripe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Under var/ (git-ignored), one folder per test session: the stack's logs outlive the run for
# whoever has to debug it, and two sessions on one machine never share a folder.
E2E_DIR = Path(os.environ.get("BITBUDDIES_E2E_DIR") or Path(__file__).resolve().parents[2] / "var" / "e2e" / str(os.getpid()))


DEADLINE_ALERT_SECONDS = 45
REVIEW_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="session")
def stripe():
    """The Stripe fake for the session: the stack's API and tasks pay and refund through it."""
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def pushover():
    """The Pushover fake for the session: Airflow's alerts reach it through the connection."""
    fake = FakePushover().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def stack(stripe, pushover):
    shutil.rmtree(E2E_DIR, ignore_errors=True)
    cfg = StackConfig(
        var_dir=E2E_DIR,
        airflow_port=free_port(),
        api_port=free_port(),
        model_server_port=free_port(),
        # The API reads them from its settings, Airflow's tasks from the connection bitbuddies_stripe.
        stripe_api_key=stripe.api_key,
        stripe_webhook_secret=stripe.webhook_secret,
        stripe_api_base=stripe.url,
        extra_env={
            **LOAD_TEST_LIMITS,
            # A borderline photo's review times out quickly enough to test (tests/e2e/test_human_review.py).
            "BITBUDDIES_REVIEW_TIMEOUT": str(REVIEW_TIMEOUT_SECONDS),
            # Airflow's DeadlineAlert fires for a run still going this long after it was queued: the
            # unanswered review above always outlasts it (slow generations of other tests may too).
            "BITBUDDIES_DEADLINE_ALERT_MINUTES": str(DEADLINE_ALERT_SECONDS / 60),
            # The Airflow connection operators set for Pushover (plugins/bitbuddies_airflow/pushover.py).
            "AIRFLOW_CONN_BITBUDDIES_PUSHOVER": json.dumps(
                {"conn_type": "generic", "login": pushover.user, "password": pushover.token, "extra": {"api_url": pushover.url}}
            ),
        },
    )
    stripe.webhook_url = f"{cfg.api_url}/api/webhooks/stripe"
    initialise(cfg)
    running = Stack(cfg)
    running.start()
    try:
        running.wait_ready(timeout=300)
        yield running
    finally:
        running.stop()
        if os.environ.get("CI"):
            for log in sorted(cfg.log_dir.glob("*.log")):
                print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def make_user(stack):
    def create(tokens: int = 3) -> str:
        email = f"user{time.time_ns()}@example.com"
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "user", "create", email, "--tokens", str(tokens)],
            env=environment(stack.cfg),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return re.search(r"bb_[A-Za-z0-9_\-]+", out).group(0)

    return create


@pytest.fixture(scope="session")
def api(stack):
    with httpx.Client(base_url=stack.cfg.api_url, timeout=30) as client:
        yield client


def jpeg_bytes(rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def wait_for_generation(api: httpx.Client, key: str, gid: str, timeout: float = 240, all_formats: bool = True) -> dict:
    """The finished generation; with ``all_formats``, a succeeded one once its fallback formats are in too."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        gen = api.get(f"/api/generations/{gid}", headers={"Authorization": f"Bearer {key}"}).json()
        if gen["status"] == "failed" or (gen["status"] == "succeeded" and not (all_formats and gen.get("formats_pending"))):
            return gen
        time.sleep(1)
    raise AssertionError(f"generation {gid} did not finish in {timeout} s: {gen}")
