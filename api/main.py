"""The BitBuddies web app and API (``uvicorn api.main:app --port 8000``).

Collects the routers (``/api/...`` with API-key auth, the public ``/b/...`` share pages,
the ``/g/...`` generation pages, the embedding endpoints ``/embed.js``, ``/oembed``,
``/extension.zip``, the web app's pages in ``api/web``)
and, for the life of the process, runs the loop that triggers DAG runs for generations
submitted while Airflow was unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.body_limits import RequestBodyLimit
from api.security_headers import SecurityHeaders
from api.deps import SUBMIT_TRIGGER_TIMEOUT_SECONDS, ErrorBody
from api.routes import embed, events, generations, share, users
from api.routes import print_webhook, sticker_orders
from api.routes import tokens, webhooks
from api.routes import generation_page, keys
from api import event_stream, web
from api.triggering import run_trigger_loop
from include import quotas
from include.airflow_client import AirflowClient
from include.migrations import migrate
from include.settings import get_settings

log = logging.getLogger(__name__)


class QuietInternalAccess(logging.Filter):
    """Leaves the pipeline's successful event posts (``POST /internal/...``, dozens a second while
    generations run) out of uvicorn's access log; their failures, and every user request, stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:  # (client, method, path, http version, status)
            path, status = args[2], args[4]
            return not (isinstance(path, str) and path.startswith("/internal/") and isinstance(status, int) and status < 400)
        return True

# Answers any /api route may give besides its own; every error body is {"detail": "<sentence>"}.
COMMON_ERRORS = {
    400: {"model": ErrorBody, "description": "Malformed request (e.g. a webhook without a valid signature)"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found (or not yours)"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    429: {"model": ErrorBody, "description": "Over a per-user limit; see Retry-After", "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}},
    503: {"model": ErrorBody, "description": "A service this needs is not configured or unavailable"},
}
api_router = APIRouter(prefix="/api", responses=COMMON_ERRORS)
api_router.include_router(generations.router)
api_router.include_router(users.router)
api_router.include_router(tokens.router)
api_router.include_router(webhooks.router)
api_router.include_router(sticker_orders.router)
api_router.include_router(print_webhook.router)
api_router.include_router(events.router)
api_router.include_router(keys.router)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    logging.getLogger("uvicorn.access").addFilter(QuietInternalAccess())
    await asyncio.to_thread(migrate)
    app.state.airflow_client = AirflowClient(timeout=SUBMIT_TRIGGER_TIMEOUT_SECONDS)
    app.state.events_bus = event_stream.create_bus()
    await app.state.events_bus.start()
    # Everything imported and built so far lives as long as the process: move it out of the
    # collector's sight, so a full collection (under load, with a thousand open streams) walks only
    # what requests and streams create. Airflow's executors do the same before they fork.
    gc.freeze()
    trigger_loop = asyncio.create_task(
        run_trigger_loop(app.state.airflow_client, settings.airflow_trigger_interval_seconds),
        name="bitbuddies-trigger-loop",
    )
    try:
        yield
    finally:
        trigger_loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trigger_loop
        app.state.airflow_client.close()
        app.state.airflow_client = None
        await app.state.events_bus.stop()


def create_app() -> FastAPI:
    app = FastAPI(
        title="BitBuddies",
        description="A photo in, an animated, transparent cartoon buddy out.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(RequestBodyLimit)
    app.add_middleware(SecurityHeaders)  # outermost: also on the body limit's own answers
    app.include_router(api_router)
    app.include_router(share.router)
    app.include_router(embed.router)
    app.include_router(generation_page.router)
    app.include_router(events.internal_router)
    web.mount(app)

    @app.exception_handler(RequestValidationError)
    async def readable_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One sentence instead of pydantic's error list: every 4xx answers {"detail": "<message>"}.
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "header", "path"))
            problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid"))
        return JSONResponse(status_code=422, content={"detail": "Invalid request: " + "; ".join(problems) + "."})

    @app.exception_handler(quotas.LimitExceeded)
    async def over_a_limit(_request: Request, exc: quotas.LimitExceeded) -> JSONResponse:
        return JSONResponse(
            status_code=429, content={"detail": str(exc)}, headers={"Retry-After": str(exc.retry_after)}
        )

    return app


app = create_app()
