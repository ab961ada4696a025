"""ModelJobTrigger: waits, in the triggerer, for one model job to finish.

It follows the job on the provider's status stream (fal's server-sent events, pushed on every
change: the wait ends as soon as the job does, without a poll per interval per job); when the
stream breaks it polls once after ``poll_interval`` and opens it again, and a provider that
refuses the stream is polled every ``poll_interval`` instead.

Its arguments are only the job's status URL, the connection id and an absolute deadline (plus,
for progress, the generation id and stage), so it can be serialized, restarted or run twice at
once (triggerer failover) without harm: polling is read-only. Transient trouble (connection errors, 429, 5xx) is ridden out with
exponential backoff (capped at :data:`MAX_BACKOFF_S`) until the deadline; the event says
``completed`` (the job finished, successfully or not: the operator fetches the result and
decides), ``error`` (the provider refused the poll for good: unknown job, bad key) or
``timeout``.

While the job waits in the provider's queue, a change of its position is published as the
generation's ``queue_position`` event (include/event_publisher.py, to the API of the connection
``bitbuddies_api``), fire-and-forget in its own task: a
slow or unreachable API never delays a poll, and a repeat (two triggerers) is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from include import event_publisher
from include.model_queue import JobState, JobStatus, ProviderError, ProviderRejected, backoff_delay

# Longest pause between polls while the provider is in trouble: long outages are ridden out,
# and the job is seen within this long after the provider comes back.
MAX_BACKOFF_S = 30.0


class ModelJobTrigger(BaseTrigger):
    def __init__(
        self,
        status_url: str,
        conn_id: str,
        deadline: float,
        poll_interval: float = 1.0,
        generation_id: str | None = None,
        stage: str | None = None,
    ):
        super().__init__()
        self.status_url = status_url
        self.conn_id = conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.generation_id = generation_id
        self.stage = stage
        self._publishing: set[asyncio.Task] = set()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "status_url": self.status_url,
                "conn_id": self.conn_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "generation_id": self.generation_id,
                "stage": self.stage,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from bitbuddies_airflow.hooks import InternalApiHook, ModelProviderHook

        client = await ModelProviderHook.aget_client(self.conn_id)
        # Read once per run: a rotated token reaches the next trigger (and this one after a failover).
        self._events = await InternalApiHook.aget_endpoint() if self.generation_id else None
        failures = 0
        last_error = ""
        self._position: int | None = None
        status: JobStatus | None = None
        # fal's status stream, until the provider refuses it for good (then polls only).
        self._streaming = True
        try:
            while time.time() < self.deadline:
                if status is None:
                    try:
                        status = await client.status(self.status_url)
                    except ProviderRejected as exc:
                        yield TriggerEvent({"status": "error", "error": str(exc)})
                        return
                    except (httpx.TransportError, ProviderError) as exc:
                        failures += 1
                        last_error = str(exc) or type(exc).__name__
                        self.log.warning("Polling %s failed (%d in a row): %s", self.status_url, failures, last_error)
                        delay = backoff_delay(failures, self.poll_interval, MAX_BACKOFF_S)
                        await asyncio.sleep(max(0.0, min(delay, self.deadline - time.time())))
                        continue
                    failures = 0
                if status.state is JobState.COMPLETED:
                    yield TriggerEvent(
                        {
                            "status": "completed",
                            "error": status.error,
                            "error_type": status.error_type,
                            "inference_time": status.inference_time,
                        }
                    )
                    return
                self._note_position(status.queue_position)
                status = await self._follow_stream(client)
            detail = f" (last poll: {last_error})" if last_error else ""
            yield TriggerEvent({"status": "timeout", "error": f"no result before the deadline{detail}"})
        finally:
            await client.aclose()

    def _note_position(self, position: int | None) -> None:
        """Publish each change of the job's queue position; log only where it joined the queue and
        when it left it. The trigger's log lines travel to the triggerer's supervisor, which also
        hands the triggers' events on: hundreds of queued waits logging every move (their
        positions change with every job that starts) held those events up by tens of seconds."""
        if position == self._position:
            return
        if self._position is None and position is not None:
            self.log.info("Job %s is queued at position %s", self.status_url, position)
        elif position is None and self._position is not None:
            self.log.info("Job %s left the queue", self.status_url)
        self._position = position
        self._publish_queue_position(position)

    async def _follow_stream(self, client) -> JobStatus | None:
        """Follow the job on its status stream (one connection: queue positions are noted as they
        come) until it completes: returns that status. None when the stream could not tell (it
        failed, ended early, or the deadline came): the caller polls, one poll interval later.
        Polls stay the authority on errors: a stream is only the fast way to hear of a change."""
        remaining = self.deadline - time.time()
        if remaining <= 0:
            return None
        if self._streaming:
            try:
                async with asyncio.timeout(remaining):
                    async for update in client.watch(self.status_url):
                        if update.state is JobState.COMPLETED:
                            return update
                        self._note_position(update.queue_position)
            except TimeoutError:
                return None  # the deadline: the caller's loop ends
            except ProviderRejected as exc:
                # A provider without the stream (or refusing it): poll from here on.
                self._streaming = False
                self.log.info("No status stream for %s (%s): polling every %s s", self.status_url, exc, self.poll_interval)
            except (httpx.TransportError, ProviderError) as exc:
                self.log.info("The status stream of %s broke (%s): polling", self.status_url, str(exc) or type(exc).__name__)
        await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - time.time())))
        return None

    def _publish_queue_position(self, position: int | None) -> None:
        """Announce the job's queue position (None: it left the queue and runs) without waiting."""
        if not self.generation_id or getattr(self, "_events", None) is None:
            return
        job = hashlib.sha1(self.status_url.encode()).hexdigest()[:12]
        data = {"stage": self.stage, "position": position}
        task = asyncio.create_task(
            event_publisher.apublish(
                self.generation_id, "queue_position", data, key=f"queue_position:{self.stage}:{job}:{position}", endpoint=self._events
            )
        )
        # Held until done: the event loop keeps only weak references to tasks.
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
