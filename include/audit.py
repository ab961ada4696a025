"""The ledger audit: every money invariant checked over the whole application database.

``bitbuddies ledger audit`` prints the report and exits non-zero on any violation. Checked:

- every entry has a known reason and the sign its reason implies; every key is derived from its
  cause (``charge:{generation}:{attempt}``, ``refund:{charge key}``);
- charges: one token, belong to a generation of the same user, at most one per attempt (the key
  is unique), attempts numbered from 1;
- refunds: reference a charge of the same generation and user, exactly compensate it, at most one
  per charge;
- refunded if and only if failed: a failed generation has no unrefunded charge; a succeeded one
  has exactly one charge and no refund; ``refund_state`` says ``refunded`` exactly when a refund
  exists; an unfinished generation holds at most one unrefunded charge;
- balances: never negative, and equal to grants + purchases - succeeded generations - tokens
  held by unfinished generations.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlmodel import select

from include.db import session_scope
from include.ledger import TOKENS_PER_GENERATION, charge_key, refund_key
from include.models import LEDGER_REASONS, Generation, LedgerEntry, User

_CHARGE_KEY = re.compile(r"^charge:(?P<gid>[0-9a-f]{32}):(?P<attempt>[1-9][0-9]*)$")


@dataclass
class AuditReport:
    users: int = 0
    generations: int = 0
    charges: int = 0
    refunds: int = 0
    purchases: int = 0
    unfinished: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [
            f"checked {self.generations} generations, {self.charges} charges, {self.refunds} refunds, "
            f"{self.purchases} purchases, {self.users} users ({self.unfinished} generations unfinished)",
            f"{len(self.violations)} violations",
        ]
        return "\n".join(lines + [f"  - {v}" for v in self.violations])


def audit() -> AuditReport:
    report = AuditReport()
    bad = report.violations.append
    with session_scope() as session:
        users = {u.id: u for u in session.exec(select(User)).all()}
        gens = {g.id: g for g in session.exec(select(Generation)).all()}
        entries = list(session.exec(select(LedgerEntry).order_by(LedgerEntry.id)).all())
    report.users, report.generations = len(users), len(gens)
    by_id = {e.id: e for e in entries}
    charges_of: dict[str, list[LedgerEntry]] = defaultdict(list)
    refund_for: dict[int, LedgerEntry] = {}
    credited: dict[int, int] = defaultdict(int)
    balance: dict[int, int] = defaultdict(int)

    for e in entries:
        balance[e.user_id] += e.amount
        if e.reason not in LEDGER_REASONS:
            bad(f"entry {e.id}: unknown reason {e.reason!r}")
        elif e.reason in ("grant", "purchase"):
            report.purchases += e.reason == "purchase"
            credited[e.user_id] += e.amount
            if e.amount <= 0:
                bad(f"entry {e.id}: a {e.reason} of {e.amount}")
        elif e.reason == "charge":
            report.charges += 1
            match = _CHARGE_KEY.match(e.idempotency_key)
            generation = gens.get(e.generation_id or "")
            if e.amount != -TOKENS_PER_GENERATION:
                bad(f"charge {e.id}: amount {e.amount}, expected {-TOKENS_PER_GENERATION}")
            if generation is None or match is None or match["gid"] != e.generation_id:
                bad(f"charge {e.id}: key {e.idempotency_key!r} does not name its generation {e.generation_id}")
                continue
            if generation.user_id != e.user_id:
                bad(f"charge {e.id}: user {e.user_id} paid for generation {generation.id} of user {generation.user_id}")
            charges_of[generation.id].append(e)
        else:  # refund
            report.refunds += 1
            charge = by_id.get(e.refund_of or -1)
            if charge is None or charge.reason != "charge":
                bad(f"refund {e.id}: refers to no charge ({e.refund_of})")
                continue
            if e.refund_of in refund_for:
                bad(f"charge {charge.id}: refunded twice ({refund_for[e.refund_of].id}, {e.id})")
            refund_for[charge.id] = e
            if e.amount != -charge.amount:
                bad(f"refund {e.id}: amount {e.amount} does not compensate charge {charge.id} ({charge.amount})")
            if (e.user_id, e.generation_id) != (charge.user_id, charge.generation_id):
                bad(f"refund {e.id}: user/generation differ from its charge {charge.id}")
            if e.idempotency_key != refund_key(charge.idempotency_key):
                bad(f"refund {e.id}: key {e.idempotency_key!r}, expected {refund_key(charge.idempotency_key)!r}")

    succeeded: dict[int, int] = defaultdict(int)
    held: dict[int, int] = defaultdict(int)
    for gid, generation in gens.items():
        charges = charges_of.get(gid, [])
        attempts = sorted(int(_CHARGE_KEY.match(c.idempotency_key)["attempt"]) for c in charges)
        if attempts != list(range(1, len(attempts) + 1)):
            bad(f"generation {gid}: charge attempts {attempts} are not 1..n")
        if any(charge_key(gid, a) != c.idempotency_key for a, c in zip(attempts, sorted(charges, key=lambda c: c.idempotency_key))):
            bad(f"generation {gid}: malformed charge keys")
        open_charges = [c for c in charges if c.id not in refund_for]
        refunded_any = len(open_charges) < len(charges)
        if generation.status == "failed" and open_charges:
            bad(f"generation {gid}: failed but charge {open_charges[0].id} is not refunded")
        elif generation.status == "succeeded":
            succeeded[generation.user_id] += 1
            if len(charges) != 1 or refunded_any:
                bad(f"generation {gid}: succeeded with {len(charges)} charge(s), refunded={refunded_any}; expected one charge, no refund")
        elif generation.status not in ("failed", "succeeded"):
            report.unfinished += 1
            held[generation.user_id] += len(open_charges)
            if len(open_charges) > 1:
                bad(f"generation {gid}: unfinished and holding {len(open_charges)} charges")
        if (generation.refund_state == "refunded") != refunded_any:
            bad(f"generation {gid}: refund_state {generation.refund_state!r} but refunded={refunded_any}")

    for user_id in sorted(set(users) | set(balance)):
        total = balance.get(user_id, 0)
        expected = credited.get(user_id, 0) - TOKENS_PER_GENERATION * (succeeded.get(user_id, 0) + held.get(user_id, 0))
        if total < 0:
            bad(f"user {user_id}: balance {total} is negative")
        if total != expected:
            bad(f"user {user_id}: balance {total}, expected grants and purchases minus succeeded and unfinished generations = {expected}")
    return report
