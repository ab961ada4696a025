"""``/api/me``: the caller and their token balance."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import CurrentUser, ErrorBody, SessionDep
from include import deletion, ledger
from include.models import UserPublic

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserPublic)
def read_me(session: SessionDep, user: CurrentUser) -> UserPublic:
    return UserPublic(id=user.id, email=user.email, balance=ledger.balance(user.id, session))


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"model": ErrorBody, "description": "A buddy is being made or a sticker order is in flight"}},
)
def delete_me(user: CurrentUser) -> None:
    """Delete your account: every buddy (photos, files, assets), your orders' addresses and sheets,
    your keys. Your token history stays, anonymised, for the accounts."""
    try:
        deletion.delete_user(user.id)
    except deletion.NotFound:  # deleted by a concurrent request: the key no longer works
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Invalid API key.") from None
    except deletion.DeletionRefused as refused:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(refused)) from None
