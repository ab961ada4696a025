"""Settling a generation that did not succeed: it ends failed and its token is refunded, together.

Every path that gives up on a generation comes here: the DAG's ``refund_token`` teardown, the
DAG's failure callback and the reconciliation DAG (a lost teardown, a run that died or never
started). The first one to run settles; the others find nothing left to do.

Why one transaction, and not "refund, then mark failed" or "mark failed, then refund" (the two
orders this replaced): each order leaves a window between its two commits.
- Refund first: a late ``publish`` (a slow run) landing in the window marks a refunded
  generation succeeded, a buddy delivered for free; a crash in it leaves a refunded generation
  that still shows as running.
- Fail first: a crash in the window leaves a failed generation with its token still taken until
  the reconciliation runs, and the user sees "failed" with the refund state unknown.
Both changes committing at once close both windows. The transaction takes the owner's ledger lock
(as every token movement does), then the generation's row (``load_for_update``: a concurrent
``mark_succeeded`` waits, then sees ``failed`` and keeps it). A generation that succeeded is
never refunded; one already failed keeps its first error and is refunded if it was not yet.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from include import generations, ledger
from include.db import session_scope
from include.models import Generation

log = logging.getLogger(__name__)

# What the user reads when the failing task recorded no more precise error (generations.record_error).
GENERIC_FAILURE = "Something went wrong while making your buddy."


def settle_failed_generation(generation_id: str, error: str = GENERIC_FAILURE, failed_task: str | None = None) -> bool:
    """End the generation failed and refund its charges, in one transaction; idempotent.

    Returns whether the generation's charges are refunded now (False for a succeeded generation,
    which is left alone, and for one that was never charged).
    """
    try:
        return _settle(generation_id, error, failed_task)
    except IntegrityError:
        # Postgres: a concurrent refund of the same charge committed first (UNIQUE refund_of) and
        # this transaction rolled back whole. Again: it now finds the refund and only ends the
        # generation if the other settlement did not.
        log.info("concurrent settlement of generation %s; settling again", generation_id)
        return _settle(generation_id, error, failed_task)


def _settle(generation_id: str, error: str, failed_task: str | None) -> bool:
    with session_scope(write_lock=True) as session:
        owner = session.get(Generation, generation_id)
        if owner is None:
            raise generations.GenerationNotFound(f"no generation {generation_id}")
        ledger.lock_user(session, owner.user_id)
        generation = generations.load_for_update(session, generation_id)
        if generation.status == "succeeded":
            return False
        generations.end_failed(generation, error, failed_task)
        ledger.refund_charges(session, generation)
        session.add(generation)
        return generation.refund_state == "refunded"
