"""The api-server's audit log written off its event loop, so a burst of writes cannot lock SQLite.

Airflow 3.3 writes a ``log`` row for every write call of its public REST API (triggering a DAG
run, patching a pool, clearing a run) in ``action_logging()``'s dependency, an ``async def``
that commits a *sync* SQLAlchemy session on the api-server's event loop. On the embedded
profile (one SQLite file) that commit waits for SQLite's write lock, and while it waits the
event loop runs nothing else. When the lock is held by another request of the same api-server
(a run being created in a threadpool thread, whose transaction is committed only when FastAPI's
event loop runs the session dependency's teardown), neither can move: the loop waits for the
lock, the lock waits for the loop. It ends only when the waiting commit gives up after the busy
timeout (``sqlite.BUSY_TIMEOUT_SECONDS``) with "database is locked", and by then the scheduler,
dag-processor and triggerer, waiting for the same lock, have given up too and exited. Twenty
generations submitted at once did this every time.

:class:`ActionLogOffTheLoop` is a root ASGI middleware (``fastapi_root_middlewares`` of the
BitBuddies plugin). Before the api-server serves anything (its lifespan start, or else the first
request) it finds every ``action_logging()`` dependency among the app's routes and overrides it
(``app.dependency_overrides``, FastAPI's own mechanism) with one that reads the request body on
the loop and runs Airflow's unchanged function, commit included, in a worker thread. The row
written is the same; only the thread that waits for the lock is another one.
"""

# No ``from __future__ import annotations``: FastAPI reads the override's parameter annotations,
# which are imported inside ``off_the_loop`` (FastAPI is imported only where an app is served).
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

log = logging.getLogger(__name__)

ACTION_LOG_MODULE = "airflow.api_fastapi.logging.decorators"
ACTION_LOG_QUALNAME = "action_logging.<locals>.log_action"


def is_action_log(call) -> bool:
    """Whether ``call`` is the dependency made by Airflow's ``action_logging()``."""
    return getattr(call, "__module__", None) == ACTION_LOG_MODULE and getattr(call, "__qualname__", None) == ACTION_LOG_QUALNAME


def _dependants(dependant) -> Iterator:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def action_log_calls(app) -> list[Callable]:
    """Every distinct ``action_logging()`` dependency of ``app``'s own routes (not its mounted apps')."""
    from fastapi.routing import APIRoute

    found: dict[int, Callable] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            for dependant in _dependants(route.dependant):
                if is_action_log(dependant.call):
                    found[id(dependant.call)] = dependant.call
    return list(found.values())


def off_the_loop(action_log: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``action_log`` as a dependency of the same parameters that runs it in a worker thread."""
    import anyio
    from fastapi import Request

    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep

    async def log_action_in_thread(request: Request, session: SessionDep, user: GetUserDep) -> None:
        # Read (and keep) the body here: Airflow's function reads it again, from the request's cache.
        await request.body()
        if "application/json" in request.headers.get("content-type", ""):
            try:
                await request.json()
            except ValueError:
                pass  # not JSON after all: the endpoint answers 422, as it would have
        await anyio.to_thread.run_sync(_run, action_log, request, session, user)

    log_action_in_thread.action_log = action_log
    return log_action_in_thread


def _run(action_log, request, session, user) -> None:
    asyncio.run(action_log(request=request, session=session, user=user))


def install(app) -> int:
    """Override each action-log dependency of FastAPI ``app`` (and of apps mounted on it); returns how many."""
    from fastapi import FastAPI
    from starlette.routing import Mount

    if not isinstance(app, FastAPI):
        return 0
    count = 0
    for call in action_log_calls(app):
        if call not in app.dependency_overrides:
            app.dependency_overrides[call] = off_the_loop(call)
            count += 1
    for route in app.routes:
        if isinstance(route, Mount) and isinstance(route.app, FastAPI):
            count += install(route.app)
    return count


class ActionLogOffTheLoop:
    """Root middleware: installs the overrides on the app it serves before passing anything on."""

    def __init__(self, app) -> None:
        self.app = app
        self.installed = False

    async def __call__(self, scope, receive, send) -> None:
        if not self.installed and scope.get("app") is not None:
            self.installed = True
            count = install(scope["app"])
            log.info("Airflow's action log runs off the event loop on %d dependencies", count)
        await self.app(scope, receive, send)


def root_middleware() -> dict:
    return {"middleware": ActionLogOffTheLoop, "args": [], "kwargs": {}, "name": "BitBuddies action log off the event loop"}
