"""
# Benchmark only: many concurrent model-job waits

One `ModelJobOperator` mapped over `BENCH_WAITS` selftest jobs (no pool, no retries): every map
index submits one job and defers to the triggerer. Used by `bench/bench_triggerer.py` through
`AIRFLOW__CORE__DAGS_FOLDER`; it is not part of the platform's `dags/`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag

from bitbuddies_airflow.operators import ModelJobOperator

WAITS = int(os.environ.get("BENCH_WAITS", "500"))
POLL_INTERVAL = float(os.environ.get("BENCH_POLL_INTERVAL", "2.0"))
JOB_SECONDS = float(os.environ.get("BENCH_JOB_SECONDS", "0"))


@dag(
    dag_id="bench_wait_for_jobs",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=WAITS + 10,
    doc_md=__doc__,
    tags=["bench"],
)
def bench_wait_for_jobs():
    ModelJobOperator.partial(
        task_id="wait",
        stage="selftest",
        poll_interval=POLL_INTERVAL,
        job_timeout=timedelta(hours=1),
        retries=0,
    ).expand(inputs=[{"seconds": JOB_SECONDS} for _ in range(WAITS)])


bench_wait_for_jobs()
