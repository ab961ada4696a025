"""``/signup``, ``/login``, ``/logout``: email and password accounts for the web app.

A new account gets ``signup_tokens`` free tokens (include/accounts.py grants them once through
the ledger). A refused form re-renders with the message next to its field and changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.web.core import CsrfChecked, MaybeUser, redirect, render, rotate_csrf, safe_next, sign_in, sign_out
from include import accounts
from include.settings import get_settings

router = APIRouter(include_in_schema=False)


def _form(request: Request, template: str, action: str, button: str, status_code: int = 200, **context) -> Response:
    context.setdefault("errors", {})
    return render(
        request, template, status_code=status_code, action=action, button=button, signup_tokens=get_settings().signup_tokens, **context
    )


@router.get("/signup")
def signup_page(request: Request, user: MaybeUser) -> Response:
    if user is not None:
        return redirect(request, "/")
    return _form(request, "auth/signup.html", "/signup", "Sign up")


@router.post("/signup", dependencies=[CsrfChecked])
async def signup(request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "") -> Response:
    try:
        # argon2 takes a third of a second: off the event loop
        user = await asyncio.to_thread(accounts.create_user, email, password)
    except accounts.AccountError as error:
        return _form(request, "auth/signup.html", "/signup", "Sign up", 422, email=email, errors={error.field: error.message})
    rotate_csrf(request)
    response = redirect(request, "/")
    await asyncio.to_thread(sign_in, request, response, user)
    return response


@router.get("/login")
def login_page(request: Request, user: MaybeUser, next: str = "/") -> Response:
    if user is not None:
        return redirect(request, safe_next(next))
    return _form(request, "auth/login.html", "/login", "Sign in", next_path=safe_next(next))


@router.post("/login", dependencies=[CsrfChecked])
async def login(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        user = await asyncio.to_thread(accounts.authenticate, email, password)
    except accounts.AccountError as error:
        return _form(
            request, "auth/login.html", "/login", "Sign in", 401, email=email, next_path=safe_next(next), errors={error.field: error.message}
        )
    rotate_csrf(request)
    response = redirect(request, safe_next(next))
    await asyncio.to_thread(sign_in, request, response, user)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    rotate_csrf(request)
    response = redirect(request, "/login")
    await asyncio.to_thread(sign_out, request, response)
    return response
