"""Airflow's audit log of a REST write is committed off the api-server's event loop.

The deadlock is reproduced with a real SQLite file (WAL, a 1 s busy timeout) and Airflow's own
``action_logging()`` dependency and ``Log`` model: request A holds the write lock until FastAPI's
loop runs its session teardown; request B's audit-log commit waits for that lock. On the loop it
blocks the teardown it waits for and fails after the timeout; in a worker thread it just waits.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep, _get_session
from airflow.api_fastapi.core_api.security import get_user
from airflow.api_fastapi.logging.decorators import action_logging
from airflow.models import Log
from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker

from bitbuddies_airflow import action_log_fix

BUSY_TIMEOUT_S = 1.0
A_HOLDS_S = 0.4


class User:
    def get_name(self) -> str:
        return "operator"


def make_app(tmp_path):
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'airflow.db'}", connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        connection.exec_driver_sql("CREATE TABLE things (name TEXT)")
    Log.__table__.create(engine)
    Session = sessionmaker(engine)
    a_holds_the_lock = threading.Event()

    def session_dependency():  # as Airflow's create_session: committed when the request is done
        with Session() as session:
            yield session
            session.commit()

    app = FastAPI()
    app.add_middleware(action_log_fix.ActionLogOffTheLoop)
    app.dependency_overrides[_get_session] = session_dependency
    app.dependency_overrides[get_user] = lambda: User()

    @app.post("/things")
    def add_thing(session: SessionDep) -> dict:  # a run being created: the write lock is held until teardown
        session.execute(sa.text("INSERT INTO things VALUES ('run')"))
        a_holds_the_lock.set()
        time.sleep(A_HOLDS_S)
        return {}

    @app.post("/pools/{name}", dependencies=[Depends(action_logging())])
    def patch_pool(name: str, body: dict) -> dict:
        return {"name": name}

    return app, engine, a_holds_the_lock


async def a_then_b(app, a_holds_the_lock) -> tuple[httpx.Response, httpx.Response, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
        a = asyncio.create_task(client.post("/things"))
        while not a_holds_the_lock.is_set():
            await asyncio.sleep(0.01)
        started = time.monotonic()
        b = await client.post("/pools/model_local", json={"slots": 2})
        took = time.monotonic() - started
        return await a, b, took


def test_an_audit_log_commit_waits_for_the_lock_in_a_thread_not_on_the_loop(tmp_path):
    app, engine, a_holds_the_lock = make_app(tmp_path)
    a, b, took = asyncio.run(a_then_b(app, a_holds_the_lock))
    assert a.status_code == 200 and b.status_code == 200, b.text
    assert b.json() == {"name": "model_local"}
    assert took < BUSY_TIMEOUT_S  # B waited for A's commit, not for the busy timeout
    with engine.connect() as connection:
        event, owner, extra = connection.execute(sa.text("SELECT event, owner, extra FROM log")).one()
        assert connection.execute(sa.text("SELECT name FROM things")).scalar_one() == "run"
    assert (event, owner) == ("patch_pool", "operator")  # the row Airflow writes, unchanged
    assert '"slots": 2' in extra and '"method": "POST"' in extra


def test_without_it_the_commit_on_the_loop_locks_out_the_teardown_it_waits_for(tmp_path, monkeypatch):
    monkeypatch.setattr(action_log_fix, "install", lambda app: 0)  # Airflow as shipped
    app, _, a_holds_the_lock = make_app(tmp_path)
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        asyncio.run(a_then_b(app, a_holds_the_lock))


def test_every_action_log_dependency_is_found_and_overridden_once():
    app = FastAPI()
    sub = FastAPI()
    app.mount("/execution", sub)
    logged = action_logging()

    @app.post("/a", dependencies=[Depends(logged)])
    def a() -> None: ...

    @app.post("/b", dependencies=[Depends(logged)])
    def b() -> None: ...

    @app.delete("/c", dependencies=[Depends(action_logging("delete_c"))])
    def c() -> None: ...

    @sub.post("/d", dependencies=[Depends(action_logging())])
    def d() -> None: ...

    @app.get("/e")
    def e() -> None: ...

    assert action_log_fix.install(app) == 3
    assert action_log_fix.install(app) == 0  # already in place
    assert app.dependency_overrides[logged].action_log is logged
    assert len(sub.dependency_overrides) == 1
