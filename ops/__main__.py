"""`make up`: initialise and start the whole platform on its embedded defaults; Ctrl-C stops it."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

from ops.stack import AIRFLOW_USER, Stack, StackConfig, accounts_from_environment, airflow_password_file, environment, initialise
from ops.supervisor import Supervisor

DEMO_EMAIL = "demo@bitbuddies.local"
DEMO_TOKENS = 25


def demo_api_key(cfg: StackConfig) -> str:
    """The demo user's API key, created with some tokens on the first start and kept in var/."""
    path = cfg.var_dir / "demo_api_key"
    if not path.exists():
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "user", "create", DEMO_EMAIL, "--tokens", str(DEMO_TOKENS)],
            env=environment(cfg),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a key: its owner only
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(re.search(r"bb_[A-Za-z0-9_\-]+", out).group(0))
    return path.read_text().strip()


def log_restarts(cfg: StackConfig) -> None:
    """The supervisor's exits and restarts, on the terminal and in var/logs/supervisor.log."""
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("bitbuddies.supervisor")
    log.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(cfg.log_dir / "supervisor.log")):
        handler.setFormatter(fmt)
        log.addHandler(handler)


def main() -> int:
    cfg = StackConfig(**accounts_from_environment())
    log_restarts(cfg)
    print("Initialising (Airflow metadata DB, pools, app DB)...", flush=True)
    initialise(cfg)
    key = demo_api_key(cfg)
    stack = Stack(cfg)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("Starting model server, Airflow (api-server, scheduler, dag-processor, triggerer) and the API...", flush=True)
    stack.start()
    try:
        stack.wait_ready()
        print(
            f"""
BitBuddies is up.
  Web app and API   {cfg.api_url}        (OpenAPI UI: {cfg.api_url}/docs)
  Airflow UI        {cfg.airflow_url}        login: {AIRFLOW_USER}, password in {airflow_password_file(cfg)}
  Model server      {cfg.model_server_url}
  Demo user         {DEMO_EMAIL}   API key: {key}
  Try it:           BITBUDDIES_API_KEY={key} .venv/bin/bitbuddies generate PHOTO --prompt "wave hello"
  Logs              {cfg.log_dir}/   (a service that exits is restarted: supervisor.log)
Press Ctrl-C to stop.""",
            flush=True,
        )
        supervisor = Supervisor(stack)
        while not stopping:
            supervisor.poll()
            time.sleep(1)
    finally:
        print("\nStopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
