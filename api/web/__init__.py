"""The web app for people: server-rendered pages (Jinja2) beside the JSON API, same origin.

One module per area (flaskr style): ``auth`` (sign up, sign in, sign out), ``buddies`` (create,
progress, result, gallery), ``tokens`` (buy token packs), ``orders`` (sticker sheets),
``account`` (balance, ledger, API keys). Templates live in ``templates/``, plain JavaScript and
CSS in ``static/`` (no inline scripts or handlers, no build step). ``core`` holds what every page
shares: the signed-in user, CSRF protection, rendering.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from api.web import account, auth, buddies, orders, tokens
from api.web.core import HERE, install as install_error_pages

router = APIRouter(include_in_schema=False)
for area in (auth, buddies, tokens, orders, account):
    router.include_router(area.router)


def mount(app: FastAPI) -> None:
    """Add the pages, their static files and their HTML error pages to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_error_pages(app)
