"""Another web site for the embedding tests and bench: hand-written static pages served from a
folder on a free loopback port (so from another origin than the BitBuddies server)."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve_pages(pages: dict[str, str]) -> Iterator[str]:
    """Serve ``pages`` (path -> text, e.g. ``index.html``, ``b/x/buddy.json``); yields the base URL."""
    with tempfile.TemporaryDirectory(prefix="static-site-") as folder:
        for name, text in pages.items():
            Path(folder, name).parent.mkdir(parents=True, exist_ok=True)
            Path(folder, name).write_text(text)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=folder))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
