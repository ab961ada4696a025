"""The one settings object of BitBuddies.

Every process (the API, the model server, Airflow tasks, the CLI) reads its configuration
from here. Values come from environment variables prefixed ``BITBUDDIES_`` (and a ``.env``
file in the project root when present). The defaults are the embedded, single-machine
configuration: everything lives under ``var/`` in the project, no accounts, no network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
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
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_region: str = ""

    # The public web app and API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"

    # Airflow REST API v2, used by the API to trigger DAG runs.
    airflow_url: str = "http://127.0.0.1:8080"
    # The API's own Airflow user, allowed only to trigger and read the BitBuddies DAGs (no default:
    # `make up` and ops/init_deployment.py create it and hand it over; see ops/airflow_roles.py).
    airflow_username: str = "bitbuddies-api"
    airflow_password: SecretStr = SecretStr("")
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
    internal_token: SecretStr = SecretStr("")
    # Seconds between SSE heartbeat comments (idle connections stay open through proxies).
    events_heartbeat_seconds: float = 15.0
    # Operator alerts (include/alerts.py): Pushover's API. Airflow processes take the token and
    # user key from the Airflow connection `bitbuddies_pushover`; these settings serve the rest.
    pushover_api_url: str = "https://api.pushover.net"
    pushover_token: SecretStr = SecretStr("")
    pushover_user: str = ""

    # Model provider: "local" (the model server shipped here) or "fal".
    model_provider: str = "local"
    model_server_host: str = "127.0.0.1"
    model_server_port: int = 8200
    model_server_workers: int = 2
    # Workers that load the models when they start; the others load them with their first job
    # (an idle server then holds one set of models, ~240 MB, instead of one per worker).
    model_server_warm_workers: int = 1
    # A worker whose models ran no job for this long gives them back (replaced by a bare worker; the
    # next job loads what it needs, 1-2 s once): an unused server idles at ~30 MB of workers instead
    # of ~300. 0 keeps them loaded for good.
    model_server_keep_alive_s: float = 300.0
    # fal mode: the model server requires `Authorization: Key <model_server_key>` as fal.ai does.
    model_server_fal_mode: bool = False
    model_server_key: SecretStr = SecretStr("")
    # fal's status stream (GET .../status/stream); off, the server answers it 404 as a provider
    # without one would, and waits poll (to compare the two: bench.bench_triggerer --no-status-stream).
    model_server_status_stream: bool = True
    # Fault injection at start-up, JSON as accepted by POST /_admin/faults (empty: no faults).
    model_server_faults: str = ""
    # Cap on one downloaded input (image or video) of a model server job.
    model_server_max_input_bytes: int = 200 * 1024 * 1024
    fal_queue_url: str = "https://queue.fal.run"
    # fal's Platform API and an *admin* key of the account: the retention DAG and deletions remove
    # fal's stored payloads and output files of a generation's jobs with it (include/retention.py).
    fal_platform_url: str = "https://api.fal.ai/v1"
    fal_admin_key: SecretStr = SecretStr("")

    # Uploads.
    max_upload_bytes: int = 15 * 1024 * 1024
    # 25 MP: a 6000x4000 camera photo fits, a 6300x6300 bitmap behind a 151 KiB PNG does not.
    max_upload_pixels: int = 25_000_000
    # Bytes of the decoded bitmap (at least 4 a pixel: RGBA), checked from the header before decoding.
    max_decoded_bytes: int = 100 * 1024 * 1024
    # Any other request body (JSON, forms without a file): api/body_limits.py.
    max_request_bytes: int = 1024 * 1024
    min_upload_side: int = 128

    # Privacy: a generation's photo and the model provider's intermediates are deleted this many
    # days after the generation ended (include/retention.py); published assets stay until deleted.
    upload_retention_days: float = 7.0

    # Per-user limits (include/quotas.py); over one the API answers 429 with Retry-After.
    # Storage of the counters: empty is this process's memory (the embedded default); production
    # shares them between API processes in Redis (redis://host:6379/N).
    limits_storage_url: str = ""
    limits_key_prefix: str = "LIMITS"
    limit_generations_in_flight: int = 5
    limit_uploads_per_minute: int = 10
    limit_event_streams: int = 20
    limit_sticker_orders_per_day: int = 10

    # Web app: free tokens for a new account (granted once through the ledger).
    signup_tokens: int = 3

    # Generation.
    animation_seconds: float = 5.0
    animation_fps: int = 24
    animation_size: int = 512

    # Print vendor for sticker orders: "local" (an outbox folder under var_dir) or "printful".
    print_vendor: str = "local"
    printful_api_url: str = "https://api.printful.com"
    printful_api_key: SecretStr = SecretStr("")
    # The vendor's catalogue variant for one kiss-cut sticker sheet.
    printful_sticker_variant_id: int = 0
    # Shared secret of the print vendor's webhook (in its URL as ?token=, or an HMAC-SHA256 of the
    # body in X-Webhook-Signature); empty in development: generated into var_dir.
    print_webhook_secret: SecretStr = SecretStr("")

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
    stripe_api_key: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("STRIPE_API_KEY", "BITBUDDIES_STRIPE_API_KEY")
    )
    stripe_webhook_secret: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "BITBUDDIES_STRIPE_WEBHOOK_SECRET")
    )
    # Another API base (a local Stripe fake in tests); empty means Stripe's own.
    stripe_api_base: str = ""

    # The owner of the DAGs links to this in the Airflow UI: the team's runbook page or a mailto:.
    dag_owner_link: str = "mailto:operators@bitbuddies.example"

    # Moderation: a photo whose score (0-1) is in [low, high) waits for an operator's approval in
    # Airflow's "Required actions" (include/review.py); an empty band ([0, 0]) turns review off.
    # Unanswered after review_timeout seconds, it is rejected (keep it below generation_deadline_minutes).
    review_band: tuple[float, float] = (0.30, 0.45)
    review_timeout: float = 1800.0

    @field_validator("review_band")
    @classmethod
    def _band_in_order(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError("review_band must be [low, high] with 0 <= low <= high <= 1")
        return band

    # Money reconciliation: a generation not finished this long after it was created is stuck;
    # the reconciliation DAG fails and refunds it.
    generation_deadline_minutes: int = 60
    # The generation DAG's DeadlineAlert: a run not finished this long after it was queued alerts
    # the operator once; 0 means at the refund deadline (generation_deadline_minutes). Set lower to
    # hear of a slow run while it can still finish.
    deadline_alert_minutes: float = 0.0
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
    def resolved_deadline_alert_minutes(self) -> float:
        return self.deadline_alert_minutes or float(self.generation_deadline_minutes)

    @property
    def resolved_airflow_public_url(self) -> str:
        return (self.airflow_public_url or self.airflow_url).rstrip("/")

    @property
    def resolved_events_publish_url(self) -> str:
        return (self.events_publish_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def resolved_internal_token(self) -> str:
        return self._secret_or_generated("internal_token", "BITBUDDIES_INTERNAL_TOKEN")

    @property
    def resolved_print_webhook_secret(self) -> str:
        return self._secret_or_generated("print_webhook_secret", "BITBUDDIES_PRINT_WEBHOOK_SECRET")

    def _secret_or_generated(self, name: str, variable: str) -> str:
        value = getattr(self, name).get_secret_value()
        if value:
            return value
        if self.environment != "development":
            raise ValueError(f"{variable} must be set outside development")
        # Development: one secret per var_dir, shared by the processes on this machine.
        return read_or_create_secret(self.var_dir / name)

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.var_dir / "storage").as_uri()


def read_or_create_secret(path: Path, length: int = 32) -> str:
    """The secret in ``path``, created (readable by its owner only, mode 0600) if missing.

    Racing processes agree on the first one written: it is made under a private name and linked
    into place, which is atomic and fails if another got there first.
    """
    if not path.exists():
        import os
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(length))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
