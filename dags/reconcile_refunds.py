"""
# Reconcile refunds

Every few minutes: finds generations whose money is not settled and settles it, so a lost refund
task or a lost failure callback can never lose a refund.

- a generation that **ended failed** with a charge that has no refund: refunded;
- a generation **not finished** long after it was created (`generation_deadline_minutes`, its run
  died, was deleted or never started): failed and refunded in one transaction
  (`include/settlement.py`).

It also sends again the operator alerts that were not delivered (Pushover was down, or the
process that raised one died before sending).

It settles through the same `include.settlement` as the generation DAG's `refund_token` task and
failure callback (the same ledger keys), so whichever runs first settles and the others change
nothing. Each settled generation
raises an alert. `bitbuddies ledger audit` checks the result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from bitbuddies_airflow.refunds import send_alert
from include import alerts, generations, ledger
from include.settlement import settle_failed_generation
from include.settings import get_settings

STUCK_ERROR = "Making your buddy took far too long and was stopped; your token was refunded."


@dag(
    dag_id="bitbuddies_reconcile_refunds",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "bitbuddies", "retries": 3, "retry_delay": timedelta(seconds=30)},
    tags=["bitbuddies", "money"],
    doc_md=__doc__,
)
def bitbuddies_reconcile_refunds():
    @task
    def settle_unsettled_generations() -> list[str]:
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
    def redeliver_alerts() -> int:
        sent = alerts.redeliver_undelivered()
        for alert in sent:
            print(f"alert {alert.key}: {'delivered' if alert.delivered_at else 'still not delivered: ' + str(alert.delivery_error)}")
        return sum(alert.delivered_at is not None for alert in sent)

    # Settling raises alerts: send the undelivered ones after.
    settle_unsettled_generations() >> redeliver_alerts()


bitbuddies_reconcile_refunds()
