"""A service for tests/ops/test_forkserver.py: reports what it is (and whether Airflow's API app came with the
fork), then exits (or sleeps until signalled)."""

import os
import signal
import sys
import time

if __name__ == "__main__":
    action, code = sys.argv[1], int(sys.argv[2])
    title = open(f"/proc/{os.getpid()}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
    sigpipe = "ignored" if signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN else "default"
    print(f"child pid={os.getpid()} pgid={os.getpgid(0)} sid={os.getsid(0)} sigpipe={sigpipe} title={title}", flush=True)
    if action == "api":
        # As the api-server's `airflow.api_fastapi.main` does: take the app built before the fork.
        from airflow.api_fastapi import app as api_app

        built = api_app.cached_app.cache_info().currsize
        api_app.create_app = None  # building it again here would fail
        from airflow.api_fastapi.main import app

        print(f"api app built before the fork: {built}, taken from it: {app is api_app.cached_app(apps='all')}")
    if action == "sleep":
        time.sleep(120)
    sys.exit(code)
