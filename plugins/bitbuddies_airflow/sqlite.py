"""Airflow's SQLite metadata DB on the embedded profile: writers wait for the lock, readers never
block them, and "now" has the precision of the times it is compared with.

Every Airflow process of the embedded stack (api-server, scheduler and its executor workers,
dag-processor, triggerer) writes to one SQLite file. In SQLite's default rollback-journal mode a
reader blocks a writer, and Python's sqlite3 gives up on a lock after 5 s: under load an operator's
change in the UI (a pool's slots, say) or a scheduler's commit failed with "database is locked".
``ops.stack.initialise`` switches the file to write-ahead logging (readers and a writer no longer
block each other; the mode is kept in the file) and the stack's processes connect with
:data:`CONNECT_ARGS` (``[database] sql_alchemy_connect_args``): a writer waits up to 30 s for
another writer.

Every Airflow process imports this module to read :data:`CONNECT_ARGS` before it connects, which
is also where SQLAlchemy's ``func.now()`` gets its SQLite form (:func:`now_with_fraction`).
SQLAlchemy renders it as ``CURRENT_TIMESTAMP``, which SQLite gives to the whole second
(``2026-12-01 19:14:00``), while Airflow stores its times as text to the microsecond
(``2026-12-01 19:14:00.245609``), and the two are compared as text. The scheduler starts a queued
run only once ``run_after <= now()``: a run triggered at 19:14:00.245 waited until 19:14:01, 0.5 s
on average and up to a second, on every generation's critical path (runs started at a whole
second + 0.03 s, measured). With ``strftime('%Y-%m-%d %H:%M:%f', 'now')`` (milliseconds) the
scheduler starts it at its next loop. Only the SQLite dialect is affected (Postgres's ``now()``
has microseconds).
"""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import functions

# Seconds a connection waits for another's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 30
CONNECT_ARGS = {"timeout": BUSY_TIMEOUT_SECONDS}

# SQLite's current UTC time to the millisecond, in the text form Airflow stores times in.
NOW_WITH_FRACTION = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


@compiles(functions.now, "sqlite")
def now_with_fraction(element, compiler, **kw) -> str:
    return NOW_WITH_FRACTION
