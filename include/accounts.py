"""People's accounts: sign-up with email and password, browser sessions, named API keys.

- **Passwords** are hashed with argon2id (pwdlib's recommended hasher). A sign-up gets
  ``signup_tokens`` free tokens through the ledger, keyed by the user (``signup-grant:{id}``),
  so a retried grant changes nothing.
- **Browser sessions** (:class:`~include.models.WebSession`): the cookie carries a random token
  and the table only its sha256; signing out deletes the row.
- **API keys** (:class:`~include.models.ApiKey`): several named keys per user, stored as sha256
  (a key has 256 random bits, so a plain hash suffices and the lookup is one indexed match);
  a revoked key is refused on its next request.

No web framework here: the API's routes, its pages and the CLI call these functions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from pwdlib import PasswordHash
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from include import ledger
from include.db import session_scope
from include.models import ApiKey, User, WebSession, utcnow
from include.settings import get_settings

API_KEY_PREFIX = "bb_"
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 200
SESSION_DAYS = 30
# Enough of a key to tell keys apart in a list, far too little to guess the rest.
SHOWN_PREFIX_CHARS = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Passwords people pick first; refused whatever their length.
_COMMON_PASSWORDS = frozenset(
    {"password", "password1", "password12", "password123", "1234567890", "qwertyuiop", "0123456789", "iloveyou12", "letmein123"}
)


class AccountError(ValueError):
    """A sign-up or sign-in that cannot go through; ``field`` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@lru_cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def check_email(email: str) -> str:
    cleaned = normalize_email(email)
    if not cleaned:
        raise AccountError("email", "Enter your email address.")
    if len(cleaned) > 320 or not _EMAIL.match(cleaned):
        raise AccountError("email", "That does not look like an email address (name@example.com).")
    return cleaned


def check_password(password: str, email: str = "") -> None:
    """Refuse a weak password with a message that says how to make it strong enough."""
    if len(password or "") < MIN_PASSWORD_CHARS:
        raise AccountError("password", f"Choose a password of at least {MIN_PASSWORD_CHARS} characters.")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError("password", f"Choose a password of at most {MAX_PASSWORD_CHARS} characters.")
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(password)) < 4 or (email and lowered == email.lower()):
        raise AccountError("password", "That password is too easy to guess: use a few unrelated words.")


# --- users --------------------------------------------------------------------------------


def create_user(email: str, password: str | None = None, tokens: int | None = None) -> User:
    """A new user; with ``password`` they can sign in to the web app.

    ``tokens`` (default ``signup_tokens``) are granted once through the ledger.
    """
    cleaned = check_email(email)
    password_hash = None
    if password is not None:
        check_password(password, cleaned)
        password_hash = _hasher().hash(password)
    try:
        with session_scope() as session:
            user = User(email=cleaned, password_hash=password_hash)
            session.add(user)
            session.flush()
    except IntegrityError:
        raise AccountError("email", "An account with this email already exists: sign in instead.") from None
    grant = get_settings().signup_tokens if tokens is None else tokens
    if grant > 0:
        ledger.grant(user.id, grant, key=signup_grant_key(user.id))
    return user


def signup_grant_key(user_id: int) -> str:
    return f"signup-grant:{user_id}"


def authenticate(email: str, password: str) -> User:
    """The user with this email and password; ``AccountError`` (the same for both mistakes) otherwise."""
    wrong = AccountError("password", "Wrong email or password.")
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == normalize_email(email))).first()
    if user is None or user.password_hash is None:
        _hasher().hash(password or "")  # the same work as a real check: no timing hint about the email
        raise wrong
    valid, new_hash = _hasher().verify_and_update(password or "", user.password_hash)
    if not valid:
        raise wrong
    if new_hash:  # hasher parameters changed since: store the stronger hash
        with session_scope() as session:
            stored = session.get(User, user.id)
            stored.password_hash = new_hash
            session.add(stored)
    return user


# --- browser sessions ---------------------------------------------------------------------


def start_session(user_id: int) -> str:
    """A new signed-in session; returns the token for the cookie (stored only as its hash)."""
    token = secrets.token_urlsafe(32)
    with session_scope() as session:
        session.add(WebSession(token_hash=_sha256(token), user_id=user_id, expires_at=utcnow() + timedelta(days=SESSION_DAYS)))
    return token


def session_user(session: Session, token: str | None) -> User | None:
    """The user a session cookie belongs to, or None (unknown, signed out or expired)."""
    if not token:
        return None
    row = session.get(WebSession, _sha256(token))
    if row is None or row.expires_at <= utcnow():
        return None
    return session.get(User, row.user_id)


def end_session(token: str | None) -> None:
    if not token:
        return
    with session_scope() as session:
        row = session.get(WebSession, _sha256(token))
        if row is not None:
            session.delete(row)


# --- API keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    key: str  # the key itself, shown once


def hash_api_key(api_key: str) -> str:
    return _sha256(api_key)


def create_api_key(user_id: int, name: str) -> NewKey:
    cleaned = (name or "").strip()
    if not cleaned:
        raise AccountError("name", "Give the key a name, e.g. the computer or script that uses it.")
    if len(cleaned) > 100:
        raise AccountError("name", "Key names are at most 100 characters.")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope() as session:
        record = ApiKey(user_id=user_id, name=cleaned, key_hash=hash_api_key(key), prefix=key[:SHOWN_PREFIX_CHARS])
        session.add(record)
        session.flush()
    return NewKey(record, key)


def list_api_keys(user_id: int, session: Session | None = None) -> list[ApiKey]:
    """The user's keys, newest first, revoked ones included (marked)."""
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(col(ApiKey.id).desc())
    if session is not None:
        return list(session.exec(query).all())
    with session_scope() as own:
        return list(own.exec(query).all())


def revoke_api_key(user_id: int, key_id: int) -> ApiKey | None:
    """Revoke one of the user's keys (repeating it changes nothing); None if they have no such key."""
    with session_scope() as session:
        record = session.get(ApiKey, key_id)
        if record is None or record.user_id != user_id:
            return None
        if record.revoked_at is None:
            record.revoked_at = utcnow()
            session.add(record)
        return record


def user_for_api_key(session: Session, api_key: str) -> User | None:
    """The owner of a live (not revoked) key, or None."""
    record = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_api_key(api_key))).first()
    if record is None or record.revoked_at is not None:
        return None
    return session.get(User, record.user_id)
