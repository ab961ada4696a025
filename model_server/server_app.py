"""The model server's HTTP face: fal.ai's queue protocol, result files, health and admin routes.

``create_app()`` builds the FastAPI app; its lifespan opens the job store and starts the
worker pool. Routes, as fal.ai's queue API (the Airflow side relies on them exactly):

- ``POST /{model_id}`` submit (optional ``Idempotency-Key``), 200 with ``status: IN_QUEUE``,
  request_id, queue_position and URLs;
- ``GET /{app_id}/requests/{id}/status[?logs=1]`` 202 while queued/running, 200 when completed;
- ``GET /{app_id}/requests/{id}/status/stream[?logs=1]`` the same answers as server-sent events,
  pushed when the job changes and closed after ``COMPLETED`` (the triggerer waits on it);
- ``GET /{model_id}/requests/{id}`` the result, 422/500 for a failed job, 400 while unfinished;
- ``PUT /{model_id}/requests/{id}/cancel`` 202 CANCELLATION_REQUESTED or 400 ALREADY_COMPLETED;
- ``GET /files/{id}/{name}`` result files; ``GET /healthz``;
- ``GET /_admin/stats``, ``POST /_admin/reset``, ``GET|POST /_admin/faults`` for tests and benchmarks;
- ``POST /_admin/purge`` deletes finished jobs and their files (a deleted generation, retention).

As on fal, the request URLs name the app (``owner/name``) without the model's sub-path
(``fal-ai/flux/dev`` -> ``fal-ai/flux/requests/...``): clients must use the URLs the submit answer
gives. In fal mode (``model_server_fal_mode``) the server also ignores ``Idempotency-Key``, as fal
has no such header: a repeated submit is a second job.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError, model_validator

from model_server.fault_injection import FaultConfig, Faults
from model_server.job_store import COMPLETED, IN_QUEUE, Job, JobStore
from model_server.model_stages import MODELS
from model_server.worker_pool import JobManager
from model_server.job_context import content_type_of
from include.settings import Settings, get_settings

# File names the stages write: plain names only, so a URL can never escape the job's folder.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SAFE_REQUEST_ID = re.compile(r"^[0-9a-f-]{36}$")
# A status stream re-reads a queued job's position this often, and writes a comment line after
# this long without news (fal: every 15 s), so that proxies and clients keep the connection.
QUEUE_REFRESH_S = 1.0
KEEPALIVE_S = 15.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    root = settings.var_dir / "model_server"
    files_root = root / "files"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        files_root.mkdir(parents=True, exist_ok=True)
        store = JobStore(root / "jobs.db")
        faults = Faults(FaultConfig.model_validate_json(settings.model_server_faults)
                        if settings.model_server_faults.strip() else None)
        watchers = JobWatchers(asyncio.get_running_loop())
        manager = JobManager(store, faults, workers=settings.model_server_workers, files_root=files_root,
                             max_input_bytes=settings.model_server_max_input_bytes,
                             warm_workers=settings.model_server_warm_workers,
                             keep_alive_s=settings.model_server_keep_alive_s, on_change=watchers.changed)
        manager.start()
        app.state.store, app.state.faults, app.state.manager, app.state.watchers = store, faults, manager, watchers
        try:
            yield
        finally:
            manager.stop()
            store.close()

    app = FastAPI(title="BitBuddies model server", version="1", lifespan=lifespan,
                  description="Offline computer-vision stages behind fal.ai's queue protocol.")

    def require_key(authorization: Annotated[str | None, Header()] = None) -> None:
        if not settings.model_server_fal_mode:
            return
        key = settings.model_server_key.get_secret_value()
        if not key or authorization != f"Key {key}":
            raise _Unauthorized()

    def inject_http_faults(request: Request) -> None:
        status = request.app.state.faults.for_http()
        if status is not None:
            raise _InjectedHttpFault(status)

    authorized = [Depends(require_key)]
    flaky = [Depends(require_key), Depends(inject_http_faults)]

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return JSONResponse({"detail": "Invalid or missing API key: use 'Authorization: Key <key>'",
                             "error_type": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": "Key"})

    @app.exception_handler(_InjectedHttpFault)
    async def injected_fault(request: Request, exc: _InjectedHttpFault) -> JSONResponse:
        if exc.status == 429:
            return JSONResponse({"detail": "Too many requests (injected)"}, status_code=429,
                                headers={"Retry-After": "1"})
        return JSONResponse({"detail": "Service unavailable (injected)"}, status_code=exc.status)

    # -- health, admin, files (declared before the catch-all model routes) ----------------------
    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        return {"status": "ok", "workers": request.app.state.manager.workers, "models": sorted(MODELS)}

    @app.get("/_admin/stats", dependencies=authorized)
    def admin_stats(request: Request) -> dict[str, Any]:
        return request.app.state.manager.stats()

    @app.post("/_admin/reset", dependencies=authorized)
    def admin_reset(request: Request) -> dict[str, Any]:
        request.app.state.manager.reset_stats()
        return {"status": "ok"}

    @app.get("/_admin/faults", dependencies=authorized)
    def admin_get_faults(request: Request) -> dict[str, Any]:
        return request.app.state.faults.current().model_dump()

    @app.post("/_admin/faults", dependencies=authorized)
    def admin_set_faults(request: Request, config: FaultConfig) -> dict[str, Any]:
        request.app.state.faults.set(config)
        return request.app.state.faults.current().model_dump()

    @app.post("/_admin/purge", dependencies=authorized)
    def admin_purge(request: Request, body: PurgeRequest) -> dict[str, Any]:
        """Delete finished jobs and their result files: one generation's (deletion) or all finished
        before a time (retention). Results of the pipeline's stages are copies of a user's photo."""
        store = request.app.state.store
        ids = store.purge_finished(key_prefix=body.idempotency_key_prefix, finished_before=body.finished_before)
        for request_id in ids:
            if _SAFE_REQUEST_ID.match(request_id):
                shutil.rmtree(files_root / request_id, ignore_errors=True)
        if body.finished_before is not None:
            # Files of no job (a job forgotten while its folder could not be removed), as old: they go too.
            known = store.known_request_ids()
            for folder in files_root.iterdir():
                if folder.name not in known and folder.stat().st_mtime < body.finished_before:
                    shutil.rmtree(folder, ignore_errors=True)
        return {"purged": len(ids)}

    @app.get("/files/{request_id}/{file_name}")
    def result_file(request_id: str, file_name: str):
        path = files_root / request_id / file_name
        if not (_SAFE_REQUEST_ID.match(request_id) and _SAFE_NAME.match(file_name)) or not path.is_file():
            return JSONResponse({"detail": "File not found"}, status_code=404)
        return FileResponse(path, media_type=content_type_of(file_name), filename=file_name)

    # -- the queue protocol -----------------------------------------------------------------
    def job_of(request: Request, app_id: str, request_id: str) -> Job | None:
        job = request.app.state.store.get(request_id)
        return job if job is not None and _app_id(job.model_id) == app_id else None

    def status_of(request: Request, model_id: str, request_id: str, logs: int) -> dict[str, Any] | None:
        """The job's status answer (None: no such job). Reporting COMPLETED records when the client
        first heard it (the triggerer benchmark splits its wait there)."""
        job = job_of(request, model_id, request_id)
        if job is None:
            return None
        body: dict[str, Any] = {"status": job.status, "request_id": request_id}
        if job.status == IN_QUEUE:
            body["queue_position"] = request.app.state.manager.queue_position(request_id)
            # The job may have started between the two reads; say what it is now.
            if body["queue_position"] is None:
                job = request.app.state.store.get(request_id)
                body = {"status": job.status, "request_id": request_id}
        body["response_url"] = _urls(request, model_id, request_id)["response_url"]
        if job.status != IN_QUEUE:
            body["logs"] = request.app.state.store.logs(request_id) if logs else None
        if job.status == COMPLETED:
            if job.done_reported_at is None:
                request.app.state.store.mark_done_reported(request_id, time.time())
            body["metrics"] = {"inference_time": job.inference_time} if job.inference_time is not None else {}
            if job.failed:
                body["error"] = job.error
                body["error_type"] = job.error_type
        return body

    @app.get("/{model_id:path}/requests/{request_id}/status", dependencies=flaky)
    def status(request: Request, model_id: str, request_id: str, logs: int = 0):
        body = status_of(request, model_id, request_id, logs)
        if body is None:
            return _not_found(request_id)
        return JSONResponse(body, status_code=200 if body["status"] == COMPLETED else 202)

    @app.get("/{model_id:path}/requests/{request_id}/status/stream", dependencies=flaky)
    async def status_stream(request: Request, model_id: str, request_id: str, logs: int = 0):
        """fal's status stream: server-sent events, each ``data:`` a status answer, sent at once and
        on every change (start, queue position, completion), closed after COMPLETED; a comment
        line every ``KEEPALIVE_S`` keeps a quiet connection open."""
        if not settings.model_server_status_stream:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        watchers: JobWatchers = request.app.state.watchers
        manager: JobManager = request.app.state.manager
        watch = watchers.watch(request_id)  # before the first read: no change is missed
        try:
            body = await run_in_threadpool(status_of, request, model_id, request_id, logs)
        except BaseException:
            watchers.unwatch(request_id, watch)
            raise
        if body is None:
            watchers.unwatch(request_id, watch)
            return _not_found(request_id)

        async def events() -> AsyncIterator[str]:
            current, sent, last_write = body, None, time.monotonic()
            try:
                while True:
                    if current != sent:
                        yield f"data: {json.dumps(current)}\n\n"
                        sent, last_write = current, time.monotonic()
                        if current["status"] == COMPLETED:
                            return
                    elif time.monotonic() - last_write >= KEEPALIVE_S:
                        yield ": keep-alive\n\n"
                        last_write = time.monotonic()
                    # Positions move as jobs ahead start (no per-job signal): looked at while queued,
                    # and the status read again only when the position moved.
                    queued = current["status"] == IN_QUEUE
                    changed = await watch.wait(QUEUE_REFRESH_S if queued else KEEPALIVE_S)
                    if not changed and (not queued or manager.queue_position(request_id) == current["queue_position"]):
                        continue
                    current = await run_in_threadpool(status_of, request, model_id, request_id, logs)
                    if current is None:  # purged meanwhile
                        return
            finally:
                watchers.unwatch(request_id, watch)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/{model_id:path}/requests/{request_id}", dependencies=flaky)
    def result(request: Request, model_id: str, request_id: str):
        job = job_of(request, model_id, request_id)
        if job is None:
            return _not_found(request_id)
        if job.status != COMPLETED:
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        delay = request.app.state.faults.answer_delay("result", job.model_id)
        if delay:
            time.sleep(delay)  # a threadpool route: this holds only its own answer
        if job.failed:
            return JSONResponse({"detail": job.error, "error_type": job.error_type},
                                status_code=job.error_status or 500,
                                headers={"X-Fal-Error-Type": job.error_type})
        return JSONResponse(job.result)

    @app.put("/{model_id:path}/requests/{request_id}/cancel", dependencies=authorized)
    def cancel(request: Request, model_id: str, request_id: str):
        if job_of(request, model_id, request_id) is None:
            return _not_found(request_id)
        if request.app.state.manager.cancel(request_id):
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)

    @app.post("/{model_id:path}", dependencies=authorized)
    async def submit(request: Request, model_id: str,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None):
        spec = MODELS.get(model_id)
        if spec is None:
            return JSONResponse({"detail": f"Model {model_id!r} not found"}, status_code=404)
        raw = await request.body()
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return JSONResponse({"detail": "The request body is not valid JSON"}, status_code=422)
        if not isinstance(payload, dict):
            return JSONResponse({"detail": "The request body must be a JSON object"}, status_code=422)
        try:
            spec.input_model.model_validate(payload)
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)},
                                status_code=422)
        base_url = str(request.base_url).rstrip("/")
        if settings.model_server_fal_mode:
            idempotency_key = None  # fal has no idempotency key
        job, _replay = await run_in_threadpool(request.app.state.manager.submit, model_id, payload, base_url,
                                               idempotency_key or None)
        position = request.app.state.manager.queue_position(job.request_id)
        delay = request.app.state.faults.answer_delay("submit", model_id)
        if delay:
            await asyncio.sleep(delay)
        return {"status": IN_QUEUE, "request_id": job.request_id, **_urls(request, model_id, job.request_id),
                "queue_position": position}

    return app


class _Watch:
    """One status stream's wake-up: set when its job changes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Until the job changes (True) or ``timeout`` passes (False), then re-armed."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        changed = self._event.is_set()
        self._event.clear()
        return changed


class JobWatchers:
    """The open status streams by request id. The job manager's slot threads report changes
    (``changed``, thread-safe, never blocking); the streams wait on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watches: dict[str, set[_Watch]] = {}

    def watch(self, request_id: str) -> _Watch:
        watch = _Watch()
        self._watches.setdefault(request_id, set()).add(watch)
        return watch

    def unwatch(self, request_id: str, watch: _Watch) -> None:
        watches = self._watches.get(request_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[request_id]

    def changed(self, request_id: str) -> None:
        if request_id in self._watches:  # a read of a dict: safe from any thread
            self._loop.call_soon_threadsafe(self._wake, request_id)

    def _wake(self, request_id: str) -> None:
        for watch in self._watches.get(request_id, ()):
            watch.set()


class _Unauthorized(Exception):
    pass


class _InjectedHttpFault(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class PurgeRequest(BaseModel):
    idempotency_key_prefix: str | None = Field(default=None, min_length=1, max_length=200)
    finished_before: float | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> "PurgeRequest":
        if self.idempotency_key_prefix is None and self.finished_before is None:
            raise ValueError("give idempotency_key_prefix or finished_before")
        return self


def _app_id(model_id: str) -> str:
    """The app a model id belongs to: its first two segments (fal drops the sub-path in request URLs)."""
    return "/".join(model_id.split("/")[:2])


def _urls(request: Request, model_id: str, request_id: str) -> dict[str, str]:
    base = f"{str(request.base_url).rstrip('/')}/{_app_id(model_id)}/requests/{request_id}"
    return {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}


def _not_found(request_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"Request {request_id!r} not found"}, status_code=404)
