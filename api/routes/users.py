"""``/api/me``: the caller and their token balance."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep
from include import ledger
from include.models import UserPublic

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserPublic)
def read_me(session: SessionDep, user: CurrentUser) -> UserPublic:
    return UserPublic(id=user.id, email=user.email, balance=ledger.balance(user.id, session))
