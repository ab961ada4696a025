"""Fault decisions: per-model and wildcard knobs, fail_next consumption, HTTP faults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_server.fault_injection import FaultConfig, Faults, JobFaults


def test_fail_next_is_consumed_and_latency_and_hang_apply_per_model() -> None:
    faults = Faults(FaultConfig(fail_next={"m/a": 2}, latency_s={"*": 0.5, "m/b": 2.0}, hang={"m/b": True}))
    assert faults.for_job("m/a") == JobFaults(latency_s=0.5, fail=True, hang=False)
    assert faults.for_job("m/a").fail is True
    assert faults.for_job("m/a").fail is False
    assert faults.for_job("m/b") == JobFaults(latency_s=2.0, fail=False, hang=True)
    # Consuming must not change what the caller configured.
    assert FaultConfig(fail_next={"m/a": 2}).fail_next == {"m/a": 2}


def test_fail_rate_and_http_rates_are_seeded_draws() -> None:
    faults = Faults(FaultConfig(fail_rate={"m/a": 0.5}, seed=7))
    draws = [faults.for_job("m/a").fail for _ in range(200)]
    assert 60 < sum(draws) < 140
    faults.set(FaultConfig(fail_rate={"m/a": 0.5}, seed=7))
    assert [faults.for_job("m/a").fail for _ in range(200)] == draws

    faults.set(FaultConfig(http_429_rate=1.0))
    assert faults.for_http() == 429
    faults.set(FaultConfig(http_5xx_rate=1.0, http_429_rate=1.0))
    assert faults.for_http() == 503
    faults.set(FaultConfig())
    assert faults.for_http() is None and faults.for_job("m/a") == JobFaults()


def test_config_rejects_unknown_knobs_and_bad_rates() -> None:
    with pytest.raises(ValidationError):
        FaultConfig.model_validate({"latency": {"m/a": 1}})
    with pytest.raises(ValidationError):
        FaultConfig(http_5xx_rate=1.5)
    assert FaultConfig.model_validate_json('{"hang": {"m/a": true}}').hang == {"m/a": True}
