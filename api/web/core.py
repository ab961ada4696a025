"""What every page shares: templates, the signed-in user, CSRF protection, the session cookie.

- **Signed in** means a ``bb_session`` cookie naming a live :class:`~include.models.WebSession`
  (HttpOnly, SameSite=Lax, Secure when the page is served over https). Pages that need a user
  take :data:`PageUser`; without one they redirect to ``/login?next=...``.
- **CSRF**: every form carries ``csrf_token``, which must equal the ``bb_csrf`` cookie (a double
  submit: another site can neither read that cookie nor set it). Every POST page route depends
  on :func:`require_csrf`; a form without the token is refused with 403 and changes nothing.
  Signing in and out replaces the token.
- Pages never show another user's data: :func:`owned_or_404` answers someone else's row
  exactly like a missing one.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from api.deps import SESSION_COOKIE, get_db
from include import accounts, ledger
from include.models import User

HERE = Path(__file__).resolve().parent
CSRF_COOKIE = "bb_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE = accounts.SESSION_DAYS * 86400

templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _money(cents: int, currency: str = "usd") -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower(), currency.upper() + " ")
    return f"{symbol}{cents / 100:.2f}"


templates.env.filters["when"] = _when
templates.env.filters["money"] = _money


class LoginRequired(Exception):
    """A page that needs a signed-in user was opened without one."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class PageNotFound(Exception):
    """A page for something missing or someone else's."""


class CsrfRejected(Exception):
    """A form posted without the right CSRF token."""


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_token(request: Request) -> str:
    """The token for this browser's forms (the cookie's, or a new one set with the response)."""
    token = getattr(request.state, "csrf_token", None) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(32)
    request.state.csrf_token = token
    return token


def rotate_csrf(request: Request) -> None:
    request.state.csrf_token = secrets.token_urlsafe(32)


def _with_csrf_cookie(request: Request, response: Response) -> Response:
    token = getattr(request.state, "csrf_token", None)
    if token and token != request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookies(request), path="/", max_age=SESSION_MAX_AGE
        )
    return response


async def require_csrf(request: Request) -> None:
    """Refuse a form whose ``csrf_token`` is missing or differs from the browser's cookie."""
    form = await request.form()  # cached by Starlette: the route's own Form/File parameters read the same
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()


CsrfChecked = Depends(require_csrf)


def optional_user(request: Request, session: Annotated[Session, Depends(get_db)]) -> User | None:
    user = accounts.session_user(session, request.cookies.get(SESSION_COOKIE))
    request.state.user = user
    return user


def required_user(request: Request, user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    return user


MaybeUser = Annotated[User | None, Depends(optional_user)]
PageUser = Annotated[User, Depends(required_user)]


def owned_or_404(row: Any, user: User) -> Any:
    if row is None or getattr(row, "user_id", None) != user.id:
        raise PageNotFound()
    return row


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    user = getattr(request.state, "user", None)
    context.setdefault("user", user)
    if user is not None and "balance" not in context:
        context["balance"] = ledger.balance(user.id)
    context["csrf_token"] = csrf_token(request)
    context["current_path"] = request.url.path
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # pages show private data
    return _with_csrf_cookie(request, response)


def redirect(request: Request, url: str) -> RedirectResponse:
    """A 303 to ``url`` (after a form), carrying a replaced CSRF cookie when there is one."""
    response = RedirectResponse(url, status_code=303)
    _with_csrf_cookie(request, response)
    return response


def sign_in(request: Request, response: Response, user: User) -> None:
    token = accounts.start_session(user.id)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookies(request), path="/", max_age=SESSION_MAX_AGE
    )


def sign_out(request: Request, response: Response) -> None:
    accounts.end_session(request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/")


def safe_next(next_path: str | None) -> str:
    """Only a path on this site (no ``//host`` or scheme): an open redirect would help phishing."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return "/"


def login_redirect(exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def install(app) -> None:
    """The page-level error handlers (HTML, not the API's JSON)."""

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc)

    @app.exception_handler(PageNotFound)
    async def _not_found(request: Request, _exc: PageNotFound) -> Response:
        return render(request, "not_found.html", status_code=404)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _exc: CsrfRejected) -> Response:
        return render(request, "csrf.html", status_code=403)
