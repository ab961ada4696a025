"""What a stage handler works with inside a worker process: its job's context and how it fails.

Shared by the worker loop (``worker_process``), which builds a :class:`JobContext` for each job
and reports a :class:`JobFailure`, and by the stage handlers (``model_stages``), which use the
context and raise the failure; neither of those two imports the other's module for them.
"""

from __future__ import annotations

import mimetypes
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from model_server.input_fetch import fetch_bytes

# error_type and HTTP status of an unexpected exception inside a stage.
INTERNAL_ERROR = "internal_error"


class JobFailure(Exception):
    """A stage's decision that the job failed, with the error_type and HTTP status to report."""

    def __init__(self, error_type: str, message: str, http_status: int = 422) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.http_status = http_status


class JobContext:
    """What a stage handler gets besides its input: logging, input fetching and output files."""

    def __init__(self, conn: Connection, request_id: str, base_url: str, files_root: Path,
                 max_input_bytes: int) -> None:
        self._conn = conn
        self.request_id = request_id
        self.base_url = base_url.rstrip("/")
        self.files_dir = files_root / request_id
        self.max_input_bytes = max_input_bytes

    def log(self, message: str, level: str = "INFO") -> None:
        self._conn.send(("log", level, message, _now_iso()))

    def fetch(self, url: str) -> bytes:
        return fetch_bytes(url, self.max_input_bytes)

    def output_path(self, file_name: str) -> Path:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        return self.files_dir / file_name

    def save_file(self, file_name: str, data: bytes) -> dict[str, Any]:
        path = self.output_path(file_name)
        path.write_bytes(data)
        return self.file_info(file_name)

    def file_info(self, file_name: str) -> dict[str, Any]:
        """A fal-style File object for an output already written under this job's folder."""
        path = self.files_dir / file_name
        return {
            "url": f"{self.base_url}/files/{self.request_id}/{file_name}",
            "content_type": content_type_of(file_name),
            "file_name": file_name,
            "file_size": path.stat().st_size,
        }


def content_type_of(file_name: str) -> str:
    if file_name.endswith(".mkv"):
        return "video/x-matroska"
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
