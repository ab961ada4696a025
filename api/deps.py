"""FastAPI dependencies shared by the routes: DB session, current user, Airflow client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlmodel import Session, select

from api.security import hash_api_key
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


def get_db() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)]
) -> User:
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Missing API key: send 'Authorization: Bearer <your bb_... key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = session.exec(select(User).where(User.api_key_hash == hash_api_key(credentials.credentials))).first()
    if user is None or user.deleted_at is not None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Invalid API key.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_airflow_client(request: Request) -> AirflowClient:
    # async: resolved on the event loop, no thread hop for a cached attribute
    client = getattr(request.app.state, "airflow_client", None)
    if client is None:  # the app runs without its lifespan (e.g. a bare TestClient)
        client = AirflowClient(timeout=SUBMIT_TRIGGER_TIMEOUT_SECONDS)
        request.app.state.airflow_client = client
    return client


AirflowDep = Annotated[AirflowClient, Depends(get_airflow_client)]
