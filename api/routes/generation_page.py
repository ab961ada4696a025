"""``/g/{id}``: the generation page, where a generation's progress and outcome can be read, and
the way back to its run in the Airflow UI.

The Airflow plugin (``plugins/bitbuddies_plugin.py``) shows this page as a tab of every DAG run
(an iframe sandboxed with scripts, same origin, forms and downloads: the self-reload works there,
new windows and top-level navigation do not; ``?dag_id=`` says which DAG the run belongs to).
Opened on its own, the page links back to the run at
``{airflow_public_url}/dags/bitbuddies_generate/runs/{id}``.

No auth, public information only, like the share page: the 128-bit random id is known only to the
owner (the API's answer) and the operator (it is the run id). The page shows the status, the
stage timeline with durations, the percent and remaining-time estimate, the provider's queue
position, the user-facing error and whether the token was refunded, and the share link once
published. It shows no email, photo or prompt. The owner's live stream is
``GET /api/generations/{id}/events`` (API key); this page reloads itself every few seconds until
the generation has ended.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import HTMLResponse

from api.deps import SessionDep
from include.generations import share_url
from include import events
from include.generations import GENERATE_DAG_ID, airflow_run_url
from include.operator_generations import generation_id_for_run
from include.models import TERMINAL_STATUSES, Generation
from include.settings import get_settings

router = APIRouter(prefix="/g", tags=["generation page"], responses={404: {"description": "No such generation"}})

REFRESH_SECONDS = 5
HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@router.get("/{generation_id}", response_class=HTMLResponse)
def generation_page(
    session: SessionDep,
    generation_id: str,
    dag_id: Annotated[str | None, Query(description="The DAG of the Airflow run showing this page")] = None,
) -> HTMLResponse:
    if dag_id is not None and dag_id != GENERATE_DAG_ID:
        # The plugin's tab is on every DAG's runs; only generation runs have a page.
        return HTMLResponse(_page("Not a generation", f"<p>Runs of <code>{escape(dag_id)}</code> are not BitBuddies generations.</p>"), headers=HEADERS)
    generation = session.get(Generation, generation_id)
    if generation is None:
        # The tab of a run an operator started from the trigger form: its generation's id is
        # derived from the run id (include/operator_generations.py).
        generation = session.get(Generation, generation_id_for_run(GENERATE_DAG_ID, generation_id))
    if generation is None or generation.deleted_at is not None:
        return HTMLResponse(
            _page("Generation not found", "<p>No generation has this id.</p>"), status_code=status.HTTP_404_NOT_FOUND, headers=HEADERS
        )
    return HTMLResponse(render_generation_page(generation, events.history(generation.id)), headers=HEADERS)


def render_generation_page(generation: Generation, history: list[events.Event]) -> str:
    finished = generation.status in TERMINAL_STATUSES
    progress = next((e.data for e in reversed(history) if "percent" in e.data), {})
    percent = 100 if generation.status == "succeeded" else progress.get("percent")
    rows = []
    for event in history:
        data = event.data
        detail = []
        if data.get("duration_seconds") is not None:
            detail.append(f"{data['duration_seconds']:.1f} s")
        if event.type == "queue_position":
            detail.append("running" if data.get("position") is None else f"queue position {data['position']}")
        if data.get("try_number") and data["try_number"] > 1:
            detail.append(f"try {data['try_number']}")
        if event.type in ("retry", "failed") and data.get("error"):
            detail.append(str(data["error"]))
        if event.type == "refund":
            detail.append("token refunded" if data.get("refunded") else "not refunded")
        rows.append(
            f"<tr><td>{event.seq}</td><td>{event.created_at:%H:%M:%S}</td><td>{escape(event.type)}</td>"
            f"<td>{escape(str(data.get('stage') or ''))}</td><td>{escape('; '.join(detail))}</td></tr>"
        )
    facts = [f"<dt>Status</dt><dd id='status'>{escape(generation.status)}</dd>"]
    if generation.stage and not finished:
        facts.append(f"<dt>Stage</dt><dd>{escape(generation.stage)}</dd>")
    if percent is not None:
        eta = progress.get("eta_seconds")
        facts.append(
            f"<dt>Progress</dt><dd><progress max='100' value='{int(percent)}'></progress> {int(percent)}%"
            + (f", about {_duration(eta)} left" if eta is not None and not finished else "")
            + "</dd>"
        )
    if generation.error:
        facts.append(f"<dt>Error</dt><dd>{escape(generation.error)}</dd>")
    if generation.status == "failed":
        refund = "refunded" if generation.refund_state == "refunded" else generation.refund_state
        facts.append(f"<dt>Token</dt><dd>{escape(refund)}</dd>")
    if generation.status == "succeeded":
        url = escape(share_url(generation), quote=True)
        facts.append(f"<dt>Buddy</dt><dd><a href='{url}'>{url}</a></dd>")
    run_url = escape(airflow_run_url(generation), quote=True)
    facts.append(f"<dt>Airflow</dt><dd><a id='airflow-run' href='{run_url}' target='_top'>the run in the Airflow UI</a></dd>")
    table = (
        "<table><thead><tr><th>#</th><th>time (UTC)</th><th>event</th><th>stage</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No progress yet.</p>"
    )
    body = f"<dl>{''.join(facts)}</dl>{table}"
    refresh = "" if finished else f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    return _page(f"Generation {generation.id}", body, refresh)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _page(title: str, body: str, head: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>{head}
<style>
  body {{ font-family: system-ui, sans-serif; color: #2d2540; margin: 1.5rem; }}
  dl {{ display: grid; grid-template-columns: max-content auto; gap: .3rem 1rem; }}
  dt {{ font-weight: 600; }} dd {{ margin: 0; }}
  table {{ border-collapse: collapse; font-size: .9rem; }}
  td, th {{ padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }}
</style></head>
<body><h1>{escape(title)}</h1>{body}</body></html>
"""
