"""The ``bitbuddies`` command: admin tasks on the app DB and a terminal client for the API.

    bitbuddies db init
    bitbuddies user create EMAIL --tokens N     (prints the new user's API key, once)
    bitbuddies user list
    bitbuddies user delete EMAIL                (buddies, files, orders' addresses; the ledger stays, anonymised)
    bitbuddies ledger audit                     (every money invariant; exit 1 on any violation)
    bitbuddies alerts list [--limit N]          (operator alerts, newest first)
    bitbuddies generate PHOTO --prompt TEXT [--motion M] [--api URL] [--key KEY]
    bitbuddies me | list [--limit N] | download ID [--format F] [--out DIR]
    bitbuddies keys create NAME | keys list | keys revoke ID

``db`` and ``user`` work on the application DB directly (run them where the DB is); the others
go through the HTTP API like any client, with ``--key`` or ``$BITBUDDIES_API_KEY``.
``download`` shows a rich progress bar where the output is a terminal and plain lines where it
is not (a log, a pipe). ``generate`` shows a live progress bar from the
generation's event stream (``GET /api/generations/{id}/events``), reconnecting with
``Last-Event-ID`` when the stream drops; it polls the generation only when the API has no stream.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

from api import sse
from include.stages import STAGE_NAMES
from include.settings import get_settings

POLL_SECONDS = 1.0
TERMINAL = ("succeeded", "failed")
# No byte (not even a heartbeat comment, every 15 s by default) for this long: the stream is dead.
STREAM_READ_TIMEOUT = 60.0
# Pauses before reopening a dropped stream, growing with consecutive failures.
RECONNECT_PAUSES = (0.2, 1.0, 2.0, 5.0)


# --- db / user ----------------------------------------------------------------------------


def db_init() -> int:
    from include.migrations import migrate

    migrate()
    print(f"Tables ready in {get_settings().resolved_database_url}")
    return 0


def user_create(email: str, tokens: int) -> int:
    from include import accounts
    from include.migrations import migrate

    if tokens < 0:
        print("--tokens must be 0 or more", file=sys.stderr)
        return 2
    migrate()
    try:
        user = accounts.create_user(email, password=None, tokens=tokens)
    except accounts.AccountError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    api_key = accounts.create_api_key(user.id, "default").key
    print(f"Created user {user.id} <{user.email}> with {tokens} token(s).", file=sys.stderr)
    print(api_key)  # alone on stdout, so scripts can capture it
    return 0


def user_list() -> int:
    from sqlmodel import select

    from include import ledger
    from include.db import session_scope
    from include.migrations import migrate
    from include.models import User

    migrate()
    with session_scope() as session:
        users = session.exec(select(User).order_by(User.id)).all()
        rows = [(u.id, u.email, ledger.balance(u.id, session), u.created_at) for u in users]
    print(f"{'id':>5}  {'email':<40} {'balance':>7}  created")
    for user_id, email, balance, created_at in rows:
        print(f"{user_id:>5}  {email:<40} {balance:>7}  {created_at:%Y-%m-%d %H:%M}")
    return 0


def user_delete(email: str) -> int:
    from sqlmodel import select

    from include import deletion
    from include.db import session_scope
    from include.models import User

    with session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).first()
    if user is None or user.deleted_at is not None:
        print(f"No user {email}", file=sys.stderr)
        return 1
    try:
        deletion.delete_user(user.id)
    except deletion.DeletionRefused as refused:
        print(f"Not deleted: {refused}", file=sys.stderr)
        return 1
    print(f"Deleted {email} (user {user.id}): buddies, files and personal data removed; ledger rows kept anonymised")
    return 0


def ledger_audit() -> int:
    from include.audit import audit
    from include.migrations import migrate

    migrate()
    report = audit()
    print(report.summary())
    return 0 if report.ok else 1


def alerts_list(limit: int) -> int:
    from include import alerts
    from include.migrations import migrate

    migrate()
    for alert in alerts.recent(limit):
        delivery = alert.channel if alert.delivery_error is None else f"{alert.channel} FAILED: {alert.delivery_error}"
        print(f"{alert.created_at:%Y-%m-%d %H:%M:%S}  {alert.key}  [{delivery}]")
        print(f"    {alert.title}")
        for line in alert.message.splitlines():
            print(f"    {line}")
        if alert.url:
            print(f"    {alert.url}")
    return 0


# --- generate -----------------------------------------------------------------------------


def progress_line(body: dict, elapsed: float) -> str:
    """One line of progress from the generation's record (the polling fallback)."""
    stage = body.get("stage")
    status = body.get("status", "?")
    if stage is None:
        where = status
    else:
        # The pipeline reports task names; "charge_token" belongs to stage "charge".
        index = next((i for i, name in enumerate(STAGE_NAMES) if stage == name or stage.startswith(name + "_")), None)
        where = f"stage {index + 1}/{len(STAGE_NAMES)} {stage}" if index is not None else f"{status}: {stage}"
    return f"[{where}] {elapsed:5.0f}s elapsed"


class ProgressBar:
    """The live progress line drawn from the generation's events: bar, percent, stage, queue, ETA."""

    def __init__(self, out: TextIO, width: int = 24) -> None:
        self.out = out
        self.width = width
        self.started = time.monotonic()
        self.stage: str | None = None
        self.percent = 0
        self.eta: float | None = None
        self.eta_at = self.started
        self.queue_position: int | None = None
        self.note = ""
        self._last_line = ""

    def update(self, event: sse.ReceivedEvent) -> None:
        data = event.json()
        self.stage = event.event if event.event in TERMINAL else data.get("stage") or self.stage
        if data.get("percent") is not None:
            self.percent = int(data["percent"])
            self.eta, self.eta_at = data.get("eta_seconds"), time.monotonic()
        if event.event == "queue_position":
            self.queue_position = data.get("position")  # None: the job left the queue and runs
        elif event.event == "stage_started":
            self.queue_position = None
        self.note = f"retrying after: {data.get('error')}" if event.event == "retry" else ""
        self.draw()

    def line(self) -> str:
        filled = self.width * self.percent // 100
        parts = [f"[{'#' * filled}{'-' * (self.width - filled)}] {self.percent:3d}%", self.stage or "waiting to start"]
        if self.queue_position is not None:
            parts.append(f"queue position {self.queue_position}")
        if self.eta is not None:
            left = max(0, int(self.eta - (time.monotonic() - self.eta_at)))
            parts.append(f"ETA {left // 60}:{left % 60:02d}")
        parts.append(f"{time.monotonic() - self.started:.0f}s")
        if self.note:
            parts.append(self.note[:80])
        return "  ".join(parts)

    def draw(self) -> None:
        line = self.line()
        # Rewrite the same terminal line; pad to erase a longer previous one.
        print("\r" + line.ljust(len(self._last_line)), end="", file=self.out, flush=True)
        self._last_line = line


class StreamUnavailable(Exception):
    """The API has no event stream for this generation (an older API): poll instead."""


def follow_events(http: httpx.Client, gid: str, headers: dict[str, str], bar: ProgressBar, deadline: float) -> str | None:
    """Follow the generation's Server-Sent Events until the terminal one; its type, or None at the deadline.

    A dropped or silent connection (no byte, not even a heartbeat, for STREAM_READ_TIMEOUT) is
    reopened with ``Last-Event-ID``, so nothing is shown twice or missed.
    """
    last_id: str | None = None
    failures = 0
    while time.monotonic() < deadline:
        request_headers = headers | ({"Last-Event-ID": last_id} if last_id else {})
        try:
            with http.stream(
                "GET", f"/api/generations/{gid}/events", headers=request_headers, timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
            ) as response:
                if response.status_code in (404, 405, 501):
                    raise StreamUnavailable(f"{response.status_code}")
                if response.status_code in (401, 403):
                    response.read()
                    raise PermissionError(_detail(response))
                if response.status_code == 200:
                    for event in sse.parse_sse(response.iter_lines()):
                        if event.id is not None:
                            last_id = event.id
                        failures = 0
                        bar.update(event)
                        if event.event in TERMINAL:
                            return event.event
        except httpx.TransportError:  # dropped, refused or silent: reconnect below
            pass
        failures += 1
        pause = RECONNECT_PAUSES[min(failures, len(RECONNECT_PAUSES)) - 1]
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
    return None


def poll_until_done(http: httpx.Client, gid: str, headers: dict[str, str], out: TextIO, poll_seconds: float, deadline: float) -> dict | None:
    """Follow by reading the generation every ``poll_seconds``; its final body, or None at the deadline."""
    started = time.monotonic()
    last_line = ""
    while time.monotonic() < deadline:
        response = http.get(f"/api/generations/{gid}", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"Could not read the generation ({response.status_code}): {_detail(response)}")
        body = response.json()
        if body["status"] in TERMINAL:
            return body
        line = progress_line(body, time.monotonic() - started)
        print("\r" + line.ljust(len(last_line)), end="", file=out, flush=True)
        last_line = line
        time.sleep(poll_seconds)
    return None


def generate(
    photo: Path,
    prompt: str,
    api_key: str,
    http: httpx.Client,
    out: TextIO = sys.stdout,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float = 3600,
    motion: str = "",
) -> int:
    """Submit the photo, then show live progress from the event stream (polling if there is none)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    content_type = mimetypes.guess_type(photo.name)[0] or "application/octet-stream"
    with photo.open("rb") as image:
        response = http.post(
            "/api/generations",
            headers=headers,
            files={"image": (photo.name, image, content_type)},
            data={"prompt": prompt, "motion": motion},
        )
    if response.status_code != 202:
        print(f"Refused ({response.status_code}): {_detail(response)}", file=out)
        return 1
    gid = response.json()["id"]
    print(f"Generation {gid} submitted (progress page: {str(http.base_url).rstrip('/')}/g/{gid}).", file=out)
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        try:
            finished = follow_events(http, gid, headers, ProgressBar(out), deadline) is not None
        except StreamUnavailable:
            finished = poll_until_done(http, gid, headers, out, poll_seconds, deadline) is not None
        body = http.get(f"/api/generations/{gid}", headers=headers)
        if body.status_code != 200:
            raise RuntimeError(f"Could not read the generation ({body.status_code}): {_detail(body)}")
        body = body.json()
    except (PermissionError, RuntimeError) as exc:
        print(f"\n{exc}", file=out)
        return 1
    print(file=out)
    if not finished or body["status"] not in TERMINAL:
        print(f"Gave up following after {timeout_seconds:.0f}s; it may still finish.", file=out)
        return 1
    if body["status"] == "succeeded":
        print(f"Your buddy is ready in {time.monotonic() - started:.0f}s.", file=out)
        for kind, url in body["assets"].items():
            if url:
                print(f"  {kind:<7} {url}", file=out)
        if body.get("formats_pending"):
            print(f"  still encoding: {', '.join(body['formats_pending'])} (ready in a few seconds)", file=out)
        print(f"  share   {body['share_url']}", file=out)
        return 0
    print(f"Failed: {body.get('error') or 'unknown error'}", file=out)
    refund = "your token was refunded" if body.get("refund_state") == "refunded" else "no refund recorded yet"
    print(f"Refund: {refund}.", file=out)
    return 1


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:300]


# --- client commands: me, list, download, keys --------------------------------------------

DOWNLOAD_FILES = {"webm": "buddy.webm", "webp": "buddy.webp", "gif": "buddy.gif", "png": "poster.png"}


class ApiRefused(Exception):
    """The API answered with an error; the message is its ``detail``."""


def _checked(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in (expected or (200,)):
        raise ApiRefused(f"{response.status_code}: {_detail(response)}")
    return response


def me(http: httpx.Client, out: TextIO = sys.stdout) -> int:
    body = _checked(http.get("/api/me")).json()
    print(f"{body['email']}  (user {body['id']})  {body['balance']} token(s)", file=out)
    return 0


def list_buddies(http: httpx.Client, limit: int, out: TextIO = sys.stdout) -> int:
    rows = _checked(http.get("/api/generations", params={"limit": limit})).json()["data"]
    if not rows:
        print("No buddies yet.", file=out)
        return 0
    print(f"{'id':<32}  {'status':<9}  {'created':<16}  prompt", file=out)
    for row in rows:
        created = row["created_at"][:16].replace("T", " ")
        print(f"{row['id']:<32}  {row['status']:<9}  {created:<16}  {row['prompt'][:60]}", file=out)
    return 0


def download(http: httpx.Client, gid: str, formats: list[str], out_dir: Path, out: TextIO = sys.stdout) -> int:
    """Save the buddy's files into ``out_dir``: a rich progress bar on a terminal, plain lines otherwise."""
    generation = _checked(http.get(f"/api/generations/{gid}")).json()
    if generation["status"] != "succeeded":
        print(f"Buddy {gid} is {generation['status']}; only finished buddies have files.", file=out)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(DOWNLOAD_FILES[f], out_dir / f"{gid}-{DOWNLOAD_FILES[f]}") for f in formats]
    if out.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=Console(file=out)) as progress:
            for name, path in targets:
                task = progress.add_task(name, total=None)
                _save(http, gid, name, path, lambda total, done, t=task: progress.update(t, total=total, completed=done))
    else:
        for name, path in targets:
            size = _save(http, gid, name, path, lambda total, done: None)
            print(f"saved {path} ({size} bytes)", file=out)
    return 0


def _save(http: httpx.Client, gid: str, name: str, path: Path, report) -> int:
    """Stream one asset into ``path`` (written under a temporary name, renamed when complete)."""
    partial = path.with_name(path.name + ".part")
    done = 0
    with http.stream("GET", f"/api/generations/{gid}/assets/{name}") as response:
        if response.status_code != 200:
            response.read()
            raise ApiRefused(f"{name}: {response.status_code}: {_detail(response)}")
        total = int(response.headers.get("content-length") or 0) or None
        with partial.open("wb") as sink:
            for chunk in response.iter_bytes():
                sink.write(chunk)
                done += len(chunk)
                report(total, done)
    partial.replace(path)
    return done


def keys_create(http: httpx.Client, name: str, out: TextIO = sys.stdout) -> int:
    body = _checked(http.post("/api/keys", json={"name": name}), 201).json()
    print(f"Created key {body['id']} \"{body['name']}\"; it is shown only now:", file=sys.stderr)
    print(body["key"], file=out)  # alone on stdout, so scripts can capture it
    return 0


def keys_list(http: httpx.Client, out: TextIO = sys.stdout) -> int:
    print(f"{'id':>5}  {'name':<24}  {'key':<14}  {'created':<16}  state", file=out)
    for key in _checked(http.get("/api/keys")).json():
        state = "revoked" if key["revoked_at"] else "active"
        print(f"{key['id']:>5}  {key['name'][:24]:<24}  {key['prefix'] + '...':<14}  {key['created_at'][:16].replace('T', ' '):<16}  {state}", file=out)
    return 0


def keys_revoke(http: httpx.Client, key_id: int, out: TextIO = sys.stdout) -> int:
    _checked(http.delete(f"/api/keys/{key_id}"), 204)
    print(f"Revoked key {key_id}.", file=out)
    return 0


def run_client(args: argparse.Namespace, api_key: str, base_url: str) -> int:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, timeout=60, headers=headers) as http:
        if args.command == "me":
            return me(http)
        if args.command == "list":
            return list_buddies(http, args.limit)
        if args.command == "download":
            formats = list(DOWNLOAD_FILES) if args.format == "all" else [args.format]
            return download(http, args.id, formats, args.out)
        if args.keys_command == "create":
            return keys_create(http, args.name)
        if args.keys_command == "list":
            return keys_list(http)
        return keys_revoke(http, args.id)


def print_outbox(argv: list[str]) -> int:
    """The local print vendor's CLI on the configured outbox (``fulfillment/vendors/local.py``)."""
    from fulfillment.vendors.local import LocalOutboxVendor
    from fulfillment.vendors.local import main as outbox_main
    from include.print_vendors import local_outbox_dir

    return outbox_main(argv, vendor=LocalOutboxVendor(local_outbox_dir()), prog="bitbuddies print-outbox")


# --- argument parsing ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitbuddies", description="BitBuddies admin and client commands.")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="application database").add_subparsers(dest="db_command", required=True)
    db.add_parser("init", help="migrate the app database to the newest schema (include/migrations)")

    user = commands.add_parser("user", help="users and their tokens").add_subparsers(dest="user_command", required=True)
    create = user.add_parser("create", help="create a user and print their API key")
    create.add_argument("email")
    create.add_argument("--tokens", type=int, default=0, help="tokens to grant (default 0)")
    user.add_parser("list", help="list users with their balance")
    user.add_parser("delete", help="delete a user and their buddies (the ledger keeps anonymised rows)").add_argument("email")

    ledger = commands.add_parser("ledger", help="the token ledger").add_subparsers(dest="ledger_command", required=True)
    ledger.add_parser("audit", help="check every money invariant over the whole database")

    alerts = commands.add_parser("alerts", help="operator alerts").add_subparsers(dest="alerts_command", required=True)
    alerts.add_parser("list", help="the newest alerts first").add_argument("--limit", type=int, default=20)

    # Listed for --help; main() hands its arguments to the outbox's own parser.
    commands.add_parser("print-outbox", help="the local print vendor's jobs: list, printed, shipped, failed")

    gen = commands.add_parser("generate", help="make a buddy from a photo through the API")
    gen.add_argument("photo", type=Path)
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--motion", default="", help="bounce, wave, jump, dance or sway (default: read from the prompt)")
    clients = [gen, commands.add_parser("me", help="you and your token balance")]
    listing = commands.add_parser("list", help="your buddies, newest first")
    listing.add_argument("--limit", type=int, default=20)
    fetch = commands.add_parser("download", help="save a buddy's files")
    fetch.add_argument("id")
    fetch.add_argument("--format", choices=[*DOWNLOAD_FILES, "all"], default="all")
    fetch.add_argument("--out", type=Path, default=Path("."), help="folder (default: the current one)")
    keys = commands.add_parser("keys", help="your API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("create", help="create a key and print it (once)").add_argument("name")
    key_commands.add_parser("list", help="list your keys")
    key_commands.add_parser("revoke", help="revoke a key at once").add_argument("id", type=int)
    for client in [*clients, listing, fetch, keys]:
        client.add_argument("--api", default=None, help="API base URL (default: settings.public_base_url)")
        client.add_argument("--key", default=None, help="API key (default: $BITBUDDIES_API_KEY)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["print-outbox"]:  # the outbox's own parser reads the rest (options included)
        return print_outbox(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "db":
        return db_init()
    if args.command == "user":
        if args.user_command == "create":
            return user_create(args.email, args.tokens)
        return user_delete(args.email) if args.user_command == "delete" else user_list()
    if args.command == "ledger":
        return ledger_audit()
    if args.command == "alerts":
        return alerts_list(args.limit)
    api_key = args.key or os.environ.get("BITBUDDIES_API_KEY")
    if not api_key:
        print("No API key: pass --key or set BITBUDDIES_API_KEY.", file=sys.stderr)
        return 2
    base_url = args.api or get_settings().public_base_url
    if args.command != "generate":
        try:
            return run_client(args, api_key, base_url)
        except ApiRefused as exc:
            print(f"Refused ({exc})", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(f"Cannot reach the API at {base_url}: {exc}", file=sys.stderr)
            return 1
    if not args.photo.is_file():
        print(f"No such photo: {args.photo}", file=sys.stderr)
        return 2
    try:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            return generate(args.photo, args.prompt, api_key, http, motion=args.motion)
    except httpx.HTTPError as exc:
        print(f"\nCannot reach the API at {base_url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopped following; the generation continues.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
