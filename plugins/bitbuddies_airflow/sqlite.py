"""Airflow's SQLite metadata DB on the embedded profile: writers wait for the lock, readers never block them.

Every Airflow process of the embedded stack (api-server, scheduler and its executor workers,
dag-processor, triggerer) writes to one SQLite file. In SQLite's default rollback-journal mode a
reader blocks a writer, and Python's sqlite3 gives up on a lock after 5 s: under load an operator's
change in the UI (a pool's slots, say) or a scheduler's commit failed with "database is locked".
``ops.stack.initialise`` switches the file to write-ahead logging (readers and a writer no longer
block each other; the mode is kept in the file) and the stack's processes connect with
:data:`CONNECT_ARGS` (``[database] sql_alchemy_connect_args``): a writer waits up to 30 s for
another writer.
"""

from __future__ import annotations

# Seconds a connection waits for another's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 30
CONNECT_ARGS = {"timeout": BUSY_TIMEOUT_SECONDS}
