"""A service for tests/ops/test_forkserver.py: reports what it is, then exits (or sleeps until signalled)."""

import os
import signal
import sys
import time

if __name__ == "__main__":
    action, code = sys.argv[1], int(sys.argv[2])
    title = open(f"/proc/{os.getpid()}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
    sigpipe = "ignored" if signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN else "default"
    print(f"child pid={os.getpid()} pgid={os.getpgid(0)} sid={os.getsid(0)} sigpipe={sigpipe} title={title}", flush=True)
    if action == "sleep":
        time.sleep(120)
    sys.exit(code)
