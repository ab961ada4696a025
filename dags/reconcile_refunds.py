"""
# Reconcile refunds

Every few minutes: finds generations whose money is not settled and settles it, so a lost refund
task or a lost failure callback can never lose a refund.

- a generation that **ended failed** with a charge that has no refund: refunded;
- a generation **not finished** long after it was created (`generation_deadline_minutes`, its run
  died, was deleted or never started): failed and refunded in one transaction
  (`include/settlement.py`).

It also raises one alert for each generation that has made no progress for `stall_minutes`
(default 3: it names the run's unfinished tasks and their states, so the operator hears of a stuck
generation within 3 + 5 minutes, long before its refund deadline), and sends again the operator
alerts that were not delivered (Pushover was down, or the process that raised one died before
sending).

It settles through the same `include.settlement` as the generation DAG's `refund_token` task and
failure callback (the same ledger keys), so whichever runs first settles and the others change
nothing. Each settled generation
raises an alert. `bitbuddies ledger audit` checks the result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


from bitbuddies_airflow.dag_defaults import RECONCILE_TIMEOUT, default_args, owner_links
from bitbuddies_airflow.notifiers import RunFailedNotifier
from bitbuddies_airflow.refunds import send_alert
from include import alerts, generations, ledger
from include.settlement import settle_failed_generation
from include.settings import get_settings

# Task states that mean a task is on its way (or stuck on it), as opposed to done or not yet due.
ACTIVE_TASK_STATES = ("scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting")
STUCK_ERROR = "Making your buddy took far too long and was stopped; your token was refunded."


@dag(
    dag_id="bitbuddies_reconcile_refunds",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=3, retry_delay=timedelta(seconds=30), execution_timeout=RECONCILE_TIMEOUT),
    owner_links=owner_links(),
    # The operator hears of a failed run once (alerts table key), on Pushover.
    on_failure_callback=RunFailedNotifier(),
    tags=["bitbuddies", "money"],
    doc_md=__doc__,
)
def bitbuddies_reconcile_refunds():
    @task
    def settle_unsettled_generations() -> list[str]:
        """Refunds failed generations whose charge has no refund; fails and refunds the ones stuck past the deadline."""
        deadline = timedelta(minutes=get_settings().generation_deadline_minutes)
        settled = []
        for gid in ledger.unsettled_generations(stuck_before=datetime.now(UTC) - deadline):
            settle_failed_generation(gid, STUCK_ERROR, None)
            generation = generations.get(gid)
            refunded = generation.refund_state == "refunded"
            print(f"{gid}: {generation.status}, refund {generation.refund_state}")
            send_alert(gid, failed_task=generation.failed_task or "reconcile_refunds", error=generation.error, refunded=refunded, log_url=None)
            settled.append(gid)
        print(f"settled {len(settled)} generation(s)")
        return settled

    @task
    def alert_stalled_generations() -> list[str]:
        """One alert per generation without progress for `stall_minutes`, naming its run's unfinished tasks."""
        since = datetime.now(UTC) - timedelta(minutes=get_settings().stall_minutes)
        stalled = generations.stalled(no_progress_since=since)
        if not stalled:
            return []
        runs = get_current_context()["ti"].get_task_states(dag_id=generations.GENERATE_DAG_ID, run_ids=[g.id for g, _ in stalled])
        for generation, last_progress in stalled:
            stuck = {task: state for task, state in runs.get(generation.id, {}).items() if state in ACTIVE_TASK_STATES}
            alert = alerts.generation_stalled(generation, last_progress, stuck, generations.airflow_run_url(generation))
            print(f"{generation.id}: no progress since {last_progress:%H:%M:%S}; stuck {stuck}; alert {alert.key}")
        return [g.id for g, _ in stalled]

    @task
    def redeliver_alerts() -> int:
        """Sends again the operator alerts Pushover did not get."""
        sent = alerts.redeliver_undelivered()
        for alert in sent:
            print(f"alert {alert.key}: {'delivered' if alert.delivered_at else 'still not delivered: ' + str(alert.delivery_error)}")
        return sum(alert.delivered_at is not None for alert in sent)

    # Settling and stalls raise alerts: send the undelivered ones after.
    [settle_unsettled_generations(), alert_stalled_generations()] >> redeliver_alerts()


bitbuddies_reconcile_refunds()
