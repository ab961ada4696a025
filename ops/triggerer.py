"""``python -m ops.triggerer [args]``: ``airflow triggerer [args]`` with its imports frozen and
its trigger runner woken by finishing triggers.

- **Frozen imports.** Airflow's triggerer forks its trigger runner from the supervisor process.
  Both then run the garbage collector over the tens of thousands of objects the imports created,
  and every page a collection touches is copied: ~110 MB more in each process within a minute.
  ``gc.freeze()`` after the imports leaves those objects to the permanent generation, as
  Airflow's own executors do before they fork their workers.
- **Woken runner.** The trigger runner (``TriggerRunner.arun``) hands fired events to its
  supervisor, which stores them and resumes the tasks, once per loop, and idles one second
  between loops (``anyio.move_on_after(1)``, not configurable). A job that is done thus waited
  its trigger's next poll, then up to a second more. Here a trigger that finishes ends that idle
  wait, so its event goes up at once; an idle triggerer still loops once a second, with the same
  database load as before. The triggerer benchmark (``bench/bench_triggerer.py``) shows the share.

Kept because it pays for its upgrade hazard, and guarded: ``tests/ops/test_triggerer.py`` fails
when Airflow's loop no longer has the shape patched here (the idle ``move_on_after(1)``,
``run_trigger``), so an Airflow upgrade breaks a test, not the waits. Measured side by side
(``--waits 100 --triggerer stock|patched``, production profile, on a shared 2-core machine at
load 20-30): the triggerer's share of job-done -> task out of deferred, median 1.24 -> 0.22 s and
p95 4.08 -> 0.60 s; the triggerer's PSS while holding the waits 240 -> 205 MB. (500 waits on a
quieter machine earlier: median 0.58 -> 0.08 s, p95 1.00 -> 0.70 s.) Seven model stages per
generation wait this way, so a generation saves several seconds. Running stock ``airflow
triggerer`` instead needs no code change: ``bench_triggerer --triggerer stock`` does it.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import anyio

import airflow.jobs.triggerer_job_runner as triggerer_job_runner  # the job, its models and the task SDK
from airflow.__main__ import main


class WakeableIdle:
    """``anyio`` as ``triggerer_job_runner`` sees it: its one timed wait, the runner's idle second,
    becomes a cancel scope that :meth:`wake` ends early."""

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._woken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    def move_on_after(self, delay: float | None, shield: bool = False) -> anyio.CancelScope:
        if self._woken:  # woken while the loop was busy: do not idle at all this time
            self._woken, delay = False, 0
        self._scope = anyio.move_on_after(delay, shield=shield)
        return self._scope

    def wake(self) -> None:
        self._woken = True
        if self._scope is not None:
            self._scope.cancel()  # a scope already left ignores it


def install() -> WakeableIdle:
    """Wake the trigger runner's loop whenever one of its triggers finishes (fired or failed)."""
    idle = WakeableIdle()
    triggerer_job_runner.anyio = idle
    runner = triggerer_job_runner.TriggerRunner
    run_trigger = runner.run_trigger

    async def run_trigger_then_wake(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await run_trigger(self, *args, **kwargs)
        finally:
            idle.wake()

    runner.run_trigger = run_trigger_then_wake
    return idle


if __name__ == "__main__":
    install()
    gc.collect()
    gc.freeze()
    sys.argv = ["airflow", "triggerer", *sys.argv[1:]]
    sys.exit(main())
