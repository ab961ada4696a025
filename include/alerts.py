"""Operator alerts: one record per thing that went wrong, delivered to the operator's phone.

An alert is an ``Alert`` row whose UNIQUE ``key`` says what it is about
(``generation_failed:{id}``): whoever reports a generation's final failure (the refund task's
callback, the DAG's failure callback, the refund reconciliation DAG) and however often, one
alert exists and it is delivered once, by the call that created it.

Delivery: Pushover's HTTP API (``POST /1/messages.json``) when configured, otherwise the log
(the row stays, ``bitbuddies alerts list`` shows them). The configuration comes from
:func:`use_pushover_config_source` (the Airflow plugin registers a lookup of the Airflow
connection ``bitbuddies_pushover``) or else from the settings ``pushover_token`` /
``pushover_user``. Sending never raises: an alert that could not be sent keeps its
``delivery_error``, and the refund reconciliation DAG sends it again
(:func:`redeliver_undelivered`), as it does an alert whose creator died before sending.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from include.db import session_scope
from include.models import Alert, Generation, User, utcnow
from include.settings import get_settings

log = logging.getLogger(__name__)

MESSAGE_MAX = 1024  # Pushover's limit, in characters
TITLE_MAX = 250
URL_TITLE = "Task in Airflow"
SEND_ATTEMPTS = 3
# Undelivered alerts are sent again (redeliver_undelivered) from this age on, for this long.
REDELIVER_AFTER = timedelta(minutes=2)
REDELIVER_WITHIN = timedelta(days=1)


@dataclass(frozen=True)
class PushoverConfig:
    token: str  # the application's API token
    user: str  # the operator's user (or group) key
    api_url: str = "https://api.pushover.net"


_config_source: Callable[[], PushoverConfig | None] | None = None


def use_pushover_config_source(source: Callable[[], PushoverConfig | None] | None) -> None:
    """Where Pushover's configuration comes from first (e.g. an Airflow connection)."""
    global _config_source
    _config_source = source


def pushover_config() -> PushoverConfig | None:
    if _config_source is not None:
        try:
            config = _config_source()
        except Exception:  # noqa: BLE001 - fall back to the settings rather than lose the alert
            log.exception("alerts: reading the Pushover configuration failed")
            config = None
        if config is not None:
            return config
    settings = get_settings()
    token = settings.pushover_token.get_secret_value()
    if token and settings.pushover_user:
        return PushoverConfig(token, settings.pushover_user, settings.pushover_api_url)
    return None


def generation_failed(
    generation_id: str, failed_task: str | None, error: str, refunded: bool, airflow_url: str | None
) -> Alert:
    """The alert for a generation's final failure; created and delivered once per generation."""
    key = f"generation_failed:{generation_id}"
    with session_scope() as session:
        generation = session.get(Generation, generation_id)
        user = session.get(User, generation.user_id) if generation else None
    who = f"{user.email} (user {user.id})" if user else "unknown user"
    refund = "token refunded" if refunded else "NOT refunded"
    message = "\n".join(
        [
            f"Generation {generation_id} failed for {who}.",
            f"Task: {failed_task or 'unknown'}",
            f"Refund: {refund}",
            f"Error: {error}",
        ]
    )
    alert = Alert(
        key=key,
        kind="generation_failed",
        generation_id=generation_id,
        user_id=user.id if user else None,
        title=f"BitBuddies: generation failed ({failed_task or 'unknown task'})"[:TITLE_MAX],
        message=message[:MESSAGE_MAX],
        details={"failed_task": failed_task, "error": error, "refunded": refunded, "user_email": user.email if user else None},
        url=airflow_url,
    )
    return raise_once(alert, urgent=not refunded)


def generation_stalled(
    generation: Generation, last_progress: datetime, stuck_tasks: dict[str, str], airflow_url: str | None
) -> Alert:
    """The alert for a generation that stopped making progress: raised once per generation.

    ``stuck_tasks`` maps each of its run's unfinished tasks to its Airflow state (``queued``,
    ``running``, ``deferred``, ``up_for_retry`` ...); empty when Airflow has no run for it.
    """
    minutes = (utcnow() - last_progress).total_seconds() / 60
    stuck = ", ".join(f"{task} ({state})" for task, state in stuck_tasks.items()) or "no Airflow run found"
    message = "\n".join(
        [
            f"Generation {generation.id} has made no progress for {minutes:.0f} min "
            f"(status {generation.status}, stage {generation.stage or 'none'}).",
            f"Stuck: {stuck}",
            "It is failed and refunded at its deadline unless it moves again.",
        ]
    )
    first = next(iter(stuck_tasks), "no run")
    alert = Alert(
        key=f"generation_stalled:{generation.id}",
        kind="generation_stalled",
        generation_id=generation.id,
        user_id=generation.user_id,
        title=f"BitBuddies: generation stuck at {first}"[:TITLE_MAX],
        message=message[:MESSAGE_MAX],
        details={"stuck_tasks": stuck_tasks, "last_progress": last_progress.isoformat(), "stage": generation.stage},
        url=airflow_url,
    )
    return raise_once(alert)


def generation_overdue(generation_id: str, run_id: str, deadline_time: str | None, airflow_url: str | None) -> Alert:
    """The alert for a generation whose run missed its deadline (Airflow's DeadlineAlert): once per generation.

    The reconciliation DAG fails and refunds it unless it finishes first.
    """
    message = "\n".join(
        [
            f"Generation {generation_id} (run {run_id}) has not finished by its deadline {deadline_time or ''}.".replace(" .", "."),
            "The reconciliation DAG fails and refunds it unless it finishes first.",
        ]
    )
    alert = Alert(
        key=f"generation_overdue:{generation_id}",
        kind="generation_overdue",
        generation_id=generation_id,
        title="BitBuddies: generation missed its deadline",
        message=message[:MESSAGE_MAX],
        details={"run_id": run_id, "deadline_time": deadline_time},
        url=airflow_url,
    )
    return raise_once(alert)


def dag_run_failed(dag_id: str, run_id: str, failed_task: str | None, error: str | None, airflow_url: str | None) -> Alert:
    """The alert for a failed run of a DAG other than the generation's (sticker orders, upkeep): once per run."""
    message = "\n".join(
        [f"DAG {dag_id} run {run_id} failed" + (f" at {failed_task}." if failed_task else "."), f"Reason: {error}" if error else ""]
    ).strip()
    alert = Alert(
        key=f"dag_run_failed:{dag_id}:{run_id}"[:200],
        kind="dag_run_failed",
        title=f"BitBuddies: {dag_id} failed ({failed_task or 'run'})"[:TITLE_MAX],
        message=message[:MESSAGE_MAX],
        details={"dag_id": dag_id, "run_id": run_id, "failed_task": failed_task, "error": error},
        url=airflow_url,
    )
    return raise_once(alert)


def raise_once(alert: Alert, *, urgent: bool = False) -> Alert:
    """Store ``alert`` and deliver it, unless an alert with its key exists: then return that one.

    However many callers report the same thing, one of them creates the row and sends it.
    """
    alert.details = {**(alert.details or {}), "urgent": urgent}
    created = _create(alert)
    if created is None:
        return _by_key(alert.key)
    return deliver(created, urgent=urgent)


def redeliver_undelivered(older_than: timedelta = REDELIVER_AFTER, within: timedelta = REDELIVER_WITHIN) -> list[Alert]:
    """Send again every alert created between ``within`` and ``older_than`` ago that was not
    delivered: Pushover was down, or the process that created it died before sending.

    Alerts Pushover refused as malformed (a 4xx other than 429) stay as they are: sending them
    again would be refused again. Called by the refund reconciliation DAG every few minutes;
    ``older_than`` leaves the creator's own attempts (seconds) alone.
    """
    now = utcnow()
    with session_scope() as session:
        pending = session.exec(
            select(Alert)
            .where(col(Alert.delivered_at).is_(None), col(Alert.created_at) <= now - older_than, col(Alert.created_at) >= now - within)
            .order_by(col(Alert.id))
        ).all()
    sent = []
    for alert in pending:
        if alert.delivery_error and _refused_for_good(alert.delivery_error):
            continue
        sent.append(deliver(alert, urgent=bool((alert.details or {}).get("urgent"))))
    return sent


def _refused_for_good(error: str) -> bool:
    match = re.match(r"Pushover answered (\d{3})", error)
    return bool(match) and 400 <= int(match.group(1)) < 500 and match.group(1) != "429"


def _create(alert: Alert) -> Alert | None:
    try:
        with session_scope() as session:
            session.add(alert)
            session.flush()
            return alert
    except IntegrityError:
        return None  # already raised by an earlier call


def _by_key(key: str) -> Alert:
    with session_scope() as session:
        return session.exec(select(Alert).where(Alert.key == key)).one()


def deliver(alert: Alert, *, urgent: bool = False) -> Alert:
    config = pushover_config()
    if config is None:
        log.error("ALERT %s\n%s\n%s", alert.title, alert.message, alert.url or "")
        channel, error = "log", None
    else:
        channel, error = "pushover", send_pushover(config, alert, priority=1 if urgent else 0)
    with session_scope() as session:
        row = session.get(Alert, alert.id)
        row.channel = channel
        row.delivery_error = error
        row.delivered_at = utcnow() if error is None else None
        session.add(row)
        return row


def send_pushover(config: PushoverConfig, alert: Alert, priority: int = 0) -> str | None:
    """POST the alert to Pushover; None when accepted, else what went wrong. Never raises."""
    form = {
        "token": config.token,
        "user": config.user,
        "title": alert.title[:TITLE_MAX],
        "message": alert.message[:MESSAGE_MAX],
        "priority": str(priority),
    }
    if alert.url:
        form.update(url=alert.url, url_title=URL_TITLE)
    problem = "not sent"
    for attempt in range(SEND_ATTEMPTS):
        try:
            response = httpx.post(f"{config.api_url.rstrip('/')}/1/messages.json", data=form, timeout=10)
        except httpx.HTTPError as exc:
            problem = f"Pushover unreachable: {exc}"
        else:
            if response.status_code == 200:
                return None
            problem = f"Pushover answered {response.status_code}: {response.text[:300]}"
            if 400 <= response.status_code < 500:
                break  # a bad request stays bad: do not hammer the API
        time.sleep(0.5 * 2**attempt)
    log.error("alert %s not delivered: %s", alert.key, problem)
    return problem


def recent(limit: int = 50) -> list[Alert]:
    """The newest alerts first, for the operator."""
    with session_scope() as session:
        return list(session.exec(select(Alert).order_by(col(Alert.created_at).desc(), col(Alert.id).desc()).limit(limit)).all())
