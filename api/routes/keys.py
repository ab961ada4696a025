"""``/api/keys``: the caller's named API keys (create: the key is in that answer only; list; revoke)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from api.deps import CurrentUser
from include import accounts
from include.models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic

router = APIRouter(prefix="/keys", tags=["keys"])


def key_public(record: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(record, from_attributes=True)


@router.get("", response_model=list[ApiKeyPublic])
def list_keys(user: CurrentUser) -> list[ApiKeyPublic]:
    """The caller's keys, newest first; revoked ones show ``revoked_at``."""
    return [key_public(k) for k in accounts.list_api_keys(user.id)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_key(user: CurrentUser, body: ApiKeyCreate) -> ApiKeyCreated:
    """A new key named ``name``; the key itself is in this answer only (only its hash is kept)."""
    try:
        new = accounts.create_api_key(user.id, body.name)
    except accounts.AccountError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=error.message) from None
    return ApiKeyCreated(**key_public(new.record).model_dump(), key=new.key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(user: CurrentUser, key_id: int) -> Response:
    """Revoke one of the caller's keys: it is refused (401) from its next request on."""
    if accounts.revoke_api_key(user.id, key_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="API key not found.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
