"""``python -m ops.triggerer [args]``: ``airflow triggerer [args]`` with its imports frozen.

Airflow's triggerer forks its trigger runner from the supervisor process. Both then run the
garbage collector over the tens of thousands of objects the imports created, and every page a
collection touches is copied: ~110 MB more in each process within a minute. ``gc.freeze()``
after the imports leaves those objects to the permanent generation, as Airflow's own executors
do before they fork their workers.
"""

from __future__ import annotations

import gc
import sys

import airflow.jobs.triggerer_job_runner  # noqa: F401  (the job, its models and the task SDK)
from airflow.__main__ import main

if __name__ == "__main__":
    gc.collect()
    gc.freeze()
    sys.argv = ["airflow", "triggerer", *sys.argv[1:]]
    sys.exit(main())
