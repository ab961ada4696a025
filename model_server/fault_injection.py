"""Fault injection for the model server: the knobs that let tests and benchmarks make it misbehave.

A :class:`FaultConfig` is set at start-up (setting ``model_server_faults``, JSON) or at run time
(``POST /_admin/faults``). Per-model maps accept ``"*"`` for every model. Job faults (latency,
failures, hangs) are decided when a job starts; HTTP faults (5xx, 429) apply to status and
result calls, which are the ones a polling client must survive. Answer delays hold the HTTP
answer of a submit (after the job exists) or of a result fetch: they keep a client's process
busy *holding* a job, which is the window the crash tests kill in.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# error_type of a job failed on purpose; its result answers 500, like a provider's internal error.
INJECTED_FAILURE = "injected_failure"


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_s: dict[str, float] = Field(default_factory=dict)
    fail_rate: dict[str, float] = Field(default_factory=dict)
    fail_next: dict[str, int] = Field(default_factory=dict)
    http_5xx_rate: float = Field(0.0, ge=0.0, le=1.0)
    http_429_rate: float = Field(0.0, ge=0.0, le=1.0)
    hang: dict[str, bool] = Field(default_factory=dict)
    submit_answer_delay_s: dict[str, float] = Field(default_factory=dict)
    result_answer_delay_s: dict[str, float] = Field(default_factory=dict)
    # Makes the random draws repeatable when set.
    seed: int | None = None


@dataclass(frozen=True)
class JobFaults:
    """What happens to one job: extra seconds before it runs, a forced failure, or a hang."""

    latency_s: float = 0.0
    fail: bool = False
    hang: bool = False


class Faults:
    """The live fault configuration; thread-safe, shared by the HTTP routes and the job manager."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._random = random.Random()
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._random = random.Random(config.seed)

    def current(self) -> FaultConfig:
        with self._lock:
            return self._config.model_copy(deep=True)

    def for_job(self, model_id: str) -> JobFaults:
        """Decide the faults of a job that is starting now (consumes one ``fail_next``)."""
        with self._lock:
            cfg = self._config
            fail = False
            for key in (model_id, "*"):
                if cfg.fail_next.get(key, 0) > 0:
                    cfg.fail_next[key] -= 1
                    fail = True
                    break
            if not fail:
                rate = _lookup(cfg.fail_rate, model_id, 0.0)
                fail = rate > 0 and self._random.random() < rate
            return JobFaults(
                latency_s=_lookup(cfg.latency_s, model_id, 0.0),
                fail=fail,
                hang=bool(_lookup(cfg.hang, model_id, False)),
            )

    def answer_delay(self, kind: str, model_id: str) -> float:
        """Seconds to hold the answer of a ``"submit"`` or ``"result"`` call for this model."""
        with self._lock:
            per_model = self._config.submit_answer_delay_s if kind == "submit" else self._config.result_answer_delay_s
            return float(_lookup(per_model, model_id, 0.0))

    def for_http(self) -> int | None:
        """An HTTP status to answer instead of the real one (503 or 429), or None."""
        with self._lock:
            cfg = self._config
            if cfg.http_5xx_rate > 0 and self._random.random() < cfg.http_5xx_rate:
                return 503
            if cfg.http_429_rate > 0 and self._random.random() < cfg.http_429_rate:
                return 429
            return None


def _lookup(per_model: dict, model_id: str, default):
    if model_id in per_model:
        return per_model[model_id]
    return per_model.get("*", default)
