"""HTTP plumbing shared by the clients in ``include/``: one TLS context per process.

httpx builds a new TLS context for every client it creates (the CA bundle read and parsed:
50-130 ms of CPU and ~0.85 MB each). The clients here share :func:`tls_context` instead, and a
long-lived parent (the scheduler, a Celery worker) builds it once before it forks the processes
that use it (``plugins/bitbuddies_airflow/preload.py``).
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context (certifi's CA bundle), built on first use."""
    return ssl.create_default_context(cafile=certifi.where())
