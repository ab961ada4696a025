"""``python -m model_server``: run the local model server on the configured host and port."""

from __future__ import annotations

import uvicorn

from model_server.server_app import create_app
from include.settings import get_settings


def main() -> None:
    settings = get_settings()
    # One server process: the job queue and the worker pool live in it (workers are its children).
    uvicorn.run(create_app(settings), host=settings.model_server_host, port=settings.model_server_port,
                log_level="warning")


if __name__ == "__main__":
    main()
