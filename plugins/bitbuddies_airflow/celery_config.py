"""The Celery configuration of the production profile's workers: Airflow's default, plus the preload.

``[celery] celery_config_options = bitbuddies_airflow.celery_config.CELERY_CONFIG``. A Celery
worker forks its pool processes from its main process, and each task's supervisor forks the task
process from a pool process; the DAG files' imports are loaded in the main process when Celery
imports its modules (``preload.py``), so every task process starts with them, as on the embedded
profile's LocalExecutor, and the supervisors notice a task process's exit at once
(``supervisor_exit.py``). Airflow's provider preloads a few of its own modules the same way.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

from bitbuddies_airflow import supervisor_exit
from bitbuddies_airflow.preload import preload_enabled, preload_for_tasks

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@import_modules.connect
def preload_task_imports(*args, **kwargs) -> None:
    # Each task's supervisor notices its process exit at once (supervisor_exit.py).
    supervisor_exit.apply()
    if preload_enabled():
        preload_for_tasks()
