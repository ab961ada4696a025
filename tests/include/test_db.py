"""The application database on Postgres: database management and the ledger's row locks.

The ledger's concurrency cases (same key from twenty threads, concurrent charges against the
last tokens, concurrent refunds) run here unchanged on Postgres, where ``SELECT ... FOR UPDATE``
on the user row, not SQLite's database lock, is what keeps them exact.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from include.db import create_database, drop_database, get_engine, reset_engine
from include.migrations import migrate
from include.settings import get_settings
from tests.include import test_ledger, test_settlement
from tests.services import postgres_server_url


@pytest.fixture
def postgres_app_db(tmp_path, monkeypatch):
    url = f"{postgres_server_url()}/bb_{os.getpid()}_{uuid.uuid4().hex[:8]}_test"
    assert create_database(url)
    monkeypatch.setenv("BITBUDDIES_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("BITBUDDIES_DATABASE_URL", url)
    monkeypatch.delenv("BITBUDDIES_STORAGE_URL", raising=False)
    get_settings.cache_clear()
    reset_engine()
    migrate()
    yield url
    reset_engine()
    get_settings.cache_clear()
    drop_database(url)


def database_exists(url: str) -> bool:
    name = url.rsplit("/", 1)[1]
    engine = create_engine(f"{postgres_server_url()}/postgres")
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    finally:
        engine.dispose()


def test_create_is_idempotent_and_drop_removes_a_database_in_use():
    url = f"{postgres_server_url()}/bb_{os.getpid()}_{uuid.uuid4().hex[:8]}_dbtest"
    assert create_database(url) is True
    try:
        assert create_database(url) is False
        holder = create_engine(url)
        with holder.connect():
            # An open session (a worker still connected at teardown) does not block the drop.
            drop_database(url)
        holder.dispose()
        assert not database_exists(url)
    finally:
        drop_database(url)


def test_create_database_refuses_other_backends():
    with pytest.raises(ValueError):
        create_database("sqlite:////tmp/x.db")


def test_app_runs_on_postgres(postgres_app_db):
    assert get_engine().dialect.name == "postgresql"


LEDGER_CASES = [
    test_ledger.test_charge_takes_one_token_once_per_attempt,
    test_ledger.test_twenty_concurrent_charges_with_the_same_key_make_one_entry,
    test_ledger.test_concurrent_charges_of_different_generations_never_overdraw,
    test_ledger.test_refund_twice_refunds_once_and_never_more_than_the_charge,
    test_ledger.test_concurrent_refunds_pay_back_exactly_once,
    test_settlement.test_concurrent_settlements_and_a_racing_publish_never_refund_a_delivered_buddy,
]


@pytest.mark.parametrize("case", LEDGER_CASES, ids=lambda case: case.__name__.removeprefix("test_"))
def test_ledger_on_postgres(postgres_app_db, case):
    case(postgres_app_db)
