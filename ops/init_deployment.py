"""``python -m ops.init_deployment``: the one-off set-up of a deployment (docker-compose's ``init``).

Idempotent, so it runs on every ``docker compose up``: migrates Airflow's metadata DB, imports the
pools from config/pools.json, creates the Airflow admin user (FAB auth manager) from
``_AIRFLOW_ADMIN_USERNAME``/``_AIRFLOW_ADMIN_PASSWORD`` unless it exists, the API's own user
``bitbuddies-api`` in the role ``BitBuddiesAPI`` (ops/airflow_roles.py), creates the app DB's
tables and the storage bucket. Connections come from ``AIRFLOW_CONN_*`` variables, not from here.
The native stacks (``make up``, tests) use ``ops.stack.initialise`` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

from ops.stack import ROOT


def airflow(*args: str) -> str:
    return subprocess.run(["airflow", *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def airflow_json(*args: str) -> list[dict]:
    """The JSON an ``airflow ... --output json`` command prints. Airflow's CLI logs import-time
    warnings to stdout before it (a line starting with a timestamp), so the JSON starts at the first
    line that opens a list or an object."""
    lines = airflow(*args, "--output", "json").splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("[", "{"))), None)
    return json.loads("\n".join(lines[start:])) if start is not None else []


def create_admin_user() -> None:
    username = os.environ["_AIRFLOW_ADMIN_USERNAME"]
    existing = airflow_json("users", "list")
    if any(user.get("username") == username for user in existing):
        print(f"Airflow user {username} exists")
        return
    airflow(
        "users", "create", "--username", username, "--password", os.environ["_AIRFLOW_ADMIN_PASSWORD"],
        "--role", "Admin", "--firstname", "BitBuddies", "--lastname", "Admin", "--email", f"{username}@bitbuddies.local",
    )  # fmt: skip
    print(f"Airflow user {username} created")


def create_api_user() -> None:
    """The API's own user, in a role that may only trigger and read the two BitBuddies DAGs: the role
    holds exactly ``api_role_permissions()`` (a right found beyond them, such as edit on a DAG from an
    earlier set-up, is taken away)."""
    from ops.airflow_roles import API_ROLE, API_USER, api_role_permissions

    # The per-DAG permission resources exist once the DAGs are serialized and synced.
    airflow("dags", "reserialize")
    airflow("sync-perm", "--include-dags")
    roles = {role.get("name") for role in airflow_json("roles", "list")}
    if API_ROLE not in roles:
        airflow("roles", "create", API_ROLE)
    wanted = set(api_role_permissions())
    held = role_permissions(API_ROLE)
    for action, resources in _by_action(wanted - held).items():
        airflow("roles", "add-perms", API_ROLE, "--resource", *resources, "--action", action)
    for action, resources in _by_action(held - wanted).items():
        airflow("roles", "del-perms", API_ROLE, "--resource", *resources, "--action", action)
    existing = airflow_json("users", "list")
    if not any(user.get("username") == API_USER for user in existing):
        airflow(
            "users", "create", "--username", API_USER, "--password", os.environ["_AIRFLOW_API_PASSWORD"],
            "--role", API_ROLE, "--firstname", "BitBuddies", "--lastname", "API", "--email", f"{API_USER}@bitbuddies.local",
        )  # fmt: skip
    print(f"Airflow user {API_USER} ({API_ROLE}) ready")


def role_permissions(role: str) -> set[tuple[str, str]]:
    """The (action, resource) pairs a FAB role holds, as Airflow's metadata DB has them."""
    rows = airflow_json("roles", "list", "--permission")
    return {(action, row["resource"]) for row in rows if row["name"] == role for action in row["action"].split(",") if action}


def _by_action(permissions: set[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for action, resource in sorted(permissions):
        grouped.setdefault(action, []).append(resource)
    return grouped


def create_bucket() -> None:
    import boto3

    from include.settings import get_settings

    settings = get_settings()
    parts = urlsplit(settings.resolved_storage_url)
    if parts.scheme != "s3":
        return
    bucket = parts.netloc.split("@", 1)[-1]
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
        region_name=settings.s3_region or None,
    )
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} created")


def main() -> int:
    from include.migrations import migrate

    airflow("db", "migrate")
    airflow("pools", "import", str(ROOT / "config" / "pools.json"))
    create_admin_user()
    create_api_user()
    migrate()
    create_bucket()
    print("deployment initialised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
