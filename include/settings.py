"""The one settings object of BitBuddies.

Every process (the API, the model server, Airflow tasks, the CLI) reads its configuration
from here. Values come from environment variables prefixed ``BITBUDDIES_`` (and a ``.env``
file in the project root when present). The defaults are the embedded, single-machine
configuration: everything lives under ``var/`` in the project, no accounts, no network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BITBUDDIES_", env_file=PROJECT_ROOT / ".env", extra="ignore")

    environment: str = "development"
    var_dir: Path = PROJECT_ROOT / "var"

    # Application database (users, generations, ledger). Not Airflow's metadata DB.
    database_url: str = ""
    # Root of object storage, as an ObjectStoragePath/fsspec URL: file:///... or s3://conn@bucket/prefix
    storage_url: str = ""
    # S3 (or S3-compatible: MinIO, moto) for processes without Airflow; Airflow tasks use the
    # connection named in storage_url. Empty values fall back to boto's own credential chain.
    s3_endpoint_url: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_region: str = ""

    # The public web app and API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"

    # Airflow REST API v2, used by the API to trigger DAG runs.
    airflow_url: str = "http://127.0.0.1:8080"
    airflow_username: str = "admin"
    airflow_password: str = "admin"
    # The Airflow UI as an operator's browser reaches it (links from the generation page to its
    # run); empty: airflow_url. In a deployment airflow_url is often an internal host name.
    airflow_public_url: str = ""
    # How often the API retries triggering generations whose DAG run could not be started.
    airflow_trigger_interval_seconds: float = 5.0

    # Live progress (store: include/events.py, fan-out: api/event_stream.py). "local": one API
    # process fans events out in-process (the embedded default); "postgres": every API process
    # LISTENs on the app DB (Postgres), so an event published to one reaches the subscribers of all.
    events_backend: str = "local"
    # Where pipeline tasks publish progress (the API's internal endpoint); empty: this machine's API.
    events_publish_url: str = ""
    # Shared secret of the internal endpoints; empty in development: generated into var_dir.
    internal_token: str = ""
    # Seconds between SSE heartbeat comments (idle connections stay open through proxies).
    events_heartbeat_seconds: float = 15.0
    # Operator alerts (include/alerts.py): Pushover's API. Airflow processes take the token and
    # user key from the Airflow connection `bitbuddies_pushover`; these settings serve the rest.
    pushover_api_url: str = "https://api.pushover.net"
    pushover_token: str = ""
    pushover_user: str = ""

    # Model provider: "local" (the model server shipped here) or "fal".
    model_provider: str = "local"
    model_server_host: str = "127.0.0.1"
    model_server_port: int = 8200
    model_server_workers: int = 2
    # fal mode: the model server requires `Authorization: Key <model_server_key>` as fal.ai does.
    model_server_fal_mode: bool = False
    model_server_key: str = ""
    # Fault injection at start-up, JSON as accepted by POST /_admin/faults (empty: no faults).
    model_server_faults: str = ""
    # Cap on one downloaded input (image or video) of a model server job.
    model_server_max_input_bytes: int = 200 * 1024 * 1024
    fal_queue_url: str = "https://queue.fal.run"

    # Uploads.
    max_upload_bytes: int = 15 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    min_upload_side: int = 128

    # Web app: free tokens for a new account (granted once through the ledger).
    signup_tokens: int = 3

    # Generation.
    animation_seconds: float = 5.0
    animation_fps: int = 24
    animation_size: int = 512

    # Print vendor for sticker orders: "local" (an outbox folder under var_dir) or "printful".
    print_vendor: str = "local"
    printful_api_url: str = "https://api.printful.com"
    printful_api_key: str = ""
    # The vendor's catalogue variant for one kiss-cut sticker sheet.
    printful_sticker_variant_id: int = 0

    # Sticker orders: price per printed sheet, and how the sticker DAG waits for the vendor.
    sticker_sheet_price_cents: int = 900
    sticker_currency: str = "usd"
    print_poll_seconds: float = 60.0
    print_wait_days: float = 30.0
    # Development only: without Stripe, mark sticker orders paid at once (logged on every order,
    # recorded on the order as payment "dev_autopay", refused when environment is production).
    orders_dev_autopay: bool = False

    # Stripe (token packs, sticker orders). Unset: payments are off and checkout answers 503.
    # The bare STRIPE_* names are the ones Stripe documents, so both spellings work.
    stripe_api_key: str = Field("", validation_alias=AliasChoices("STRIPE_API_KEY", "BITBUDDIES_STRIPE_API_KEY"))
    stripe_webhook_secret: str = Field(
        "", validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "BITBUDDIES_STRIPE_WEBHOOK_SECRET")
    )
    # Another API base (a local Stripe fake in tests); empty means Stripe's own.
    stripe_api_base: str = ""

    # Money reconciliation: a generation not finished this long after it was created is stuck;
    # the reconciliation DAG fails and refunds it.
    generation_deadline_minutes: int = 60
    # A generation with no progress (stage, event) this long raises one operator alert naming the
    # stuck task; the reconciliation DAG checks every 5 minutes.
    stall_minutes: int = 3

    @property
    def model_server_url(self) -> str:
        return f"http://{self.model_server_host}:{self.model_server_port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'app.db'}"

    @property
    def resolved_airflow_public_url(self) -> str:
        return (self.airflow_public_url or self.airflow_url).rstrip("/")

    @property
    def resolved_events_publish_url(self) -> str:
        return (self.events_publish_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def resolved_internal_token(self) -> str:
        if self.internal_token:
            return self.internal_token
        if self.environment != "development":
            raise ValueError("BITBUDDIES_INTERNAL_TOKEN must be set outside development")
        # Development: one secret per var_dir, shared by the API and the tasks on this machine.
        path = self.var_dir / "internal_token"
        if not path.exists():
            import os
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"internal_token.{os.getpid()}")
            draft.write_text(secrets.token_urlsafe(32))
            try:
                os.link(draft, path)  # atomic and exclusive: racing processes agree on the first
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip()

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.var_dir / "storage").as_uri()


@lru_cache
def get_settings() -> Settings:
    return Settings()
