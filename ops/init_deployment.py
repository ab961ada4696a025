"""``python -m ops.init_deployment``: the one-off set-up of a deployment (docker-compose's ``init``).

Idempotent, so it runs on every ``docker compose up``: migrates Airflow's metadata DB, imports the
pools from config/pools.json, creates the Airflow admin user (FAB auth manager) from
``_AIRFLOW_ADMIN_USERNAME``/``_AIRFLOW_ADMIN_PASSWORD`` unless it exists, creates the app DB's
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


def create_admin_user() -> None:
    username = os.environ["_AIRFLOW_ADMIN_USERNAME"]
    existing = json.loads(airflow("users", "list", "--output", "json") or "[]")
    if any(user.get("username") == username for user in existing):
        print(f"Airflow user {username} exists")
        return
    airflow(
        "users", "create", "--username", username, "--password", os.environ["_AIRFLOW_ADMIN_PASSWORD"],
        "--role", "Admin", "--firstname", "BitBuddies", "--lastname", "Admin", "--email", f"{username}@bitbuddies.local",
    )  # fmt: skip
    print(f"Airflow user {username} created")


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
        aws_secret_access_key=settings.s3_secret_access_key or None,
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
    migrate()
    create_bucket()
    print("deployment initialised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
