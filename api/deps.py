"""FastAPI dependencies shared by the routes: DB session, current user, Airflow client.

The JSON API authenticates with ``Authorization: Bearer <api key>``. A few reads that a browser
makes without being able to send that header (the progress stream, asset downloads, the sticker
sheet PDF, a generation's status) also accept the web app's session cookie
(:data:`BrowserOrApiUser`); they are all GETs, so the cookie (SameSite=Lax) cannot be used by
another site to change anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlmodel import Session

from include import accounts
from include.airflow_client import AirflowClient
from include.db import get_engine
from include.models import User
from include.settings import Settings, get_settings

# Submitting must stay snappy when Airflow is slow: the trigger loop retries later anyway.
SUBMIT_TRIGGER_TIMEOUT_SECONDS = 5.0

class ErrorBody(BaseModel):
    """Every error answer: one sentence for the user."""

    detail: str


api_key_scheme = HTTPBearer(auto_error=False, description="Your BitBuddies API key (bb_...)")
# The web app's session cookie (api/web/core.py sets it).
SESSION_COOKIE = "bb_session"


def get_db() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None, session_token: str | None = None) -> User:
    """The caller from their API key, or (where a route passes it) their session cookie; else 401."""
    if credentials is None or not credentials.credentials:
        # A browser's read (see the module docstring): its session cookie instead of a key.
        user = accounts.session_user(session, session_token) if session_token else None
        if user is not None and user.deleted_at is None:
            return user
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Missing API key: send 'Authorization: Bearer <your bb_... key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = accounts.user_for_api_key(session, credentials.credentials)
    if user is None or user.deleted_at is not None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Invalid API key.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)]
) -> User:
    return authenticate(session, credentials)


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_browser_or_api_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
) -> User:
    return authenticate(session, credentials, request.cookies.get(SESSION_COOKIE))


BrowserOrApiUser = Annotated[User, Depends(get_browser_or_api_user)]


async def get_airflow_client(request: Request) -> AirflowClient:
    # async: resolved on the event loop, no thread hop for a cached attribute
    client = getattr(request.app.state, "airflow_client", None)
    if client is None:  # the app runs without its lifespan (e.g. a bare TestClient)
        client = AirflowClient(timeout=SUBMIT_TRIGGER_TIMEOUT_SECONDS)
        request.app.state.airflow_client = client
    return client


AirflowDep = Annotated[AirflowClient, Depends(get_airflow_client)]
