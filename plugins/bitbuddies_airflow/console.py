"""The operator's pages inside the Airflow UI: "Alerts" and "Ledger audit", read-only.

A FastAPI app the plugin (``plugins/bitbuddies_plugin.py``) mounts on the api-server under
``/bitbuddies``; the UI shows each page in its navigation (``external_views``, destination
``nav``) as an iframe on the same origin. Every page asks Airflow's auth manager who the caller
is (the UI's ``_token`` cookie, or a bearer token) and whether they may see the custom view
``BitBuddies``; anyone else gets 401/403. Nothing here writes: the alerts come from the alert table
(``include/alerts.py``), the audit is ``include/audit.py`` run on request.
"""

from __future__ import annotations

import asyncio
from html import escape

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from include import alerts, audit

RESOURCE = "BitBuddies"
ALERTS_SHOWN = 200
HEADERS = {"Cache-Control": "no-store"}
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a202c; }
h1 { font-size: 20px; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { background: #f7fafc; font-weight: 600; }
.bad { color: #c53030; } .ok { color: #2f855a; } .muted { color: #718096; }
pre { white-space: pre-wrap; margin: 0; font: inherit; }
dl { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; }
dt { font-weight: 600; }
"""


async def operator(request: Request):
    """The Airflow user calling, if they may see the BitBuddies views (else 401/403)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Sign in to Airflow first.")
    manager = get_auth_manager()
    try:
        user = await manager.get_user_from_token(token)
    except Exception:  # noqa: BLE001 - expired or forged: the same answer
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Your Airflow session has expired: sign in again.") from None
    if not manager.is_authorized_custom_view(method="GET", resource_name=RESOURCE, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "You may not see the BitBuddies views.")
    return user


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def render_alerts(rows: list) -> str:
    if not rows:
        return _page("Alerts", "<p class='muted'>No alerts.</p>")
    lines = []
    for alert in rows:
        if alert.delivered_at:
            delivery = f"<span class='ok'>{escape(alert.channel)}, {alert.delivered_at:%Y-%m-%d %H:%M:%S}</span>"
        elif alert.delivery_error:
            delivery = f"<span class='bad'>not delivered: {escape(alert.delivery_error)}</span>"
        else:
            delivery = f"<span class='muted'>{escape(alert.channel)}</span>"
        link = f"<a href='{escape(alert.url)}' target='_top'>task</a>" if alert.url else ""
        lines.append(
            f"<tr><td>{alert.created_at:%Y-%m-%d %H:%M:%S}</td><td>{escape(alert.kind)}</td>"
            f"<td><strong>{escape(alert.title)}</strong><pre>{escape(alert.message)}</pre></td>"
            f"<td>{delivery}</td><td>{link}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>Raised (UTC)</th><th>Kind</th><th>Alert</th><th>Delivery</th><th></th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>"
    )
    return _page("Alerts", f"<p class='muted'>The newest {len(rows)} alerts, one per cause.</p>{table}")


def render_audit(report) -> str:
    counts = [
        ("Users", report.users), ("Generations", report.generations), ("Unfinished generations", report.unfinished),
        ("Charges", report.charges), ("Refunds", report.refunds), ("Purchases", report.purchases),
    ]
    facts = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in counts)
    if report.ok:
        verdict = "<p class='ok' id='verdict'>No violations: every money invariant holds.</p>"
    else:
        items = "".join(f"<li>{escape(v)}</li>" for v in report.violations)
        verdict = f"<p class='bad' id='verdict'>{len(report.violations)} violations</p><ul class='bad'>{items}</ul>"
    return _page("Ledger audit", f"<dl>{facts}</dl>{verdict}")


app = FastAPI(title="BitBuddies operator views", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/alerts", response_class=HTMLResponse)
async def alerts_page(_user=Depends(operator)) -> HTMLResponse:
    rows = await asyncio.to_thread(alerts.recent, ALERTS_SHOWN)
    return HTMLResponse(render_alerts(rows), headers=HEADERS)


@app.get("/audit", response_class=HTMLResponse)
async def audit_page(_user=Depends(operator)) -> HTMLResponse:
    report = await asyncio.to_thread(audit.audit)
    return HTMLResponse(render_audit(report), headers=HEADERS)
