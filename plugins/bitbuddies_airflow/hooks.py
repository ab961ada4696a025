"""The Airflow connections of BitBuddies, turned into what ``include/`` takes as arguments.

Secrets reach Airflow's processes only through these connections (``config/connections.json``
and the deployment's ``AIRFLOW_CONN_*`` variables); ``include/`` never imports Airflow, so each hook
hands over a small value object and the code in ``include/`` uses that instead of its settings:

- :class:`ModelProviderHook` (``bitbuddies_models``): a model provider's queue client, below.
- :class:`StripeHook` (``bitbuddies_stripe``): password = Stripe's secret key, extra
  ``{"api_base": ...}`` another API base (a local fake); -> ``include.payments.StripeAccount``.
- :class:`PrintfulHook` (``bitbuddies_printful``): password = Printful's API token, host (schema,
  port) its API's address; -> ``include.print_vendors.PrintfulAccount``.
- :class:`InternalApiHook` (``bitbuddies_api``): host (schema, port) = the API as the pipeline
  reaches it, password = the shared internal token; -> ``include.event_publisher.EventsEndpoint``.


ModelProviderHook: one HTTP connection (default ``bitbuddies_models``) says where the provider is and how to
authenticate: host/port/schema give the queue base URL (``http://127.0.0.1:8200`` for the local
model server, ``https://queue.fal.run`` for fal.ai) and the password holds the key sent as
``Authorization: Key ...``. The connection's extra ``{"models": {"animate": "fal-ai/..."}}``
overrides the model id of any stage, so switching provider is configuration, not code.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from include.model_queue import AsyncQueueClient, QueueClient
from include.settings import get_settings
from include.stages import MODEL_IDS

if TYPE_CHECKING:
    from include.event_publisher import EventsEndpoint
    from include.payments import StripeAccount
    from include.print_vendors import PrintfulAccount

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "bitbuddies_models"
STRIPE_CONN_ID = "bitbuddies_stripe"
PRINTFUL_CONN_ID = "bitbuddies_printful"
API_CONN_ID = "bitbuddies_api"
PRINTFUL_API_URL = "https://api.printful.com"

def _base_url(conn, default_schema: str = "http", default_host: str = "127.0.0.1") -> str:
    schema = conn.schema or default_schema
    host = conn.host or default_host
    if "://" in host:  # a full URL in the host field
        return host.rstrip("/")
    port = f":{conn.port}" if conn.port else ""
    return f"{schema}://{host}{port}"


class ModelProviderHook(BaseHook):
    conn_name_attr = "model_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "http"
    hook_name = "BitBuddies model provider"

    def __init__(self, model_conn_id: str = DEFAULT_CONN_ID):
        super().__init__()
        self.model_conn_id = model_conn_id

    @cached_property
    def connection(self):
        return self.get_connection(self.model_conn_id)

    @property
    def base_url(self) -> str:
        return _base_url(self.connection)

    def model_id(self, stage: str) -> str:
        models = (self.connection.extra_dejson or {}).get("models", {})
        return models.get(stage) or MODEL_IDS[stage]  # the local model server's (include/stages.py)

    def get_client(self) -> QueueClient:
        # The provider's copies of a job's files live no longer than the photo they came from.
        retention = int(get_settings().upload_retention_days * 86400)
        return QueueClient(self.base_url, self.connection.password or None, media_expiry_seconds=retention)

    @classmethod
    async def aget_client(cls, conn_id: str) -> AsyncQueueClient:
        conn = await cls.aget_connection(conn_id)
        return AsyncQueueClient(conn.password or None)


class StripeHook(BaseHook):
    """Stripe's secret key (and, in tests, another API base) from the connection ``bitbuddies_stripe``."""

    conn_name_attr = "stripe_conn_id"
    default_conn_name = STRIPE_CONN_ID
    conn_type = "generic"
    hook_name = "BitBuddies Stripe"

    def __init__(self, stripe_conn_id: str = STRIPE_CONN_ID):
        super().__init__()
        self.stripe_conn_id = stripe_conn_id

    def get_account(self) -> StripeAccount:
        """The account; without the connection an empty one: a refund through Stripe then fails
        (PaymentsNotConfigured), while orders paid without Stripe settle as before."""
        from include.payments import StripeAccount

        try:
            conn = self.get_connection(self.stripe_conn_id)
        except AirflowNotFoundException:
            log.warning("No Airflow connection %s: refunds through Stripe cannot be made", self.stripe_conn_id)
            return StripeAccount("")
        return StripeAccount(conn.password or "", (conn.extra_dejson or {}).get("api_base") or "")


class PrintfulHook(BaseHook):
    """Printful's API address and token from the connection ``bitbuddies_printful`` (required when
    the vendor is ``printful``: a missing connection fails the task)."""

    conn_name_attr = "printful_conn_id"
    default_conn_name = PRINTFUL_CONN_ID
    conn_type = "http"
    hook_name = "BitBuddies Printful"

    def __init__(self, printful_conn_id: str = PRINTFUL_CONN_ID):
        super().__init__()
        self.printful_conn_id = printful_conn_id

    @staticmethod
    def account_of(conn) -> PrintfulAccount:
        from include.print_vendors import PrintfulAccount

        if not conn.host:
            return PrintfulAccount(PRINTFUL_API_URL, conn.password or "")
        return PrintfulAccount(_base_url(conn, default_schema="https"), conn.password or "")

    def get_account(self) -> PrintfulAccount:
        return self.account_of(self.get_connection(self.printful_conn_id))

    @classmethod
    async def aget_account(cls, conn_id: str = PRINTFUL_CONN_ID) -> PrintfulAccount:
        return cls.account_of(await cls.aget_connection(conn_id))


class InternalApiHook(BaseHook):
    """Where the pipeline posts progress events and the token it shows, from ``bitbuddies_api``."""

    conn_name_attr = "api_conn_id"
    default_conn_name = API_CONN_ID
    conn_type = "http"
    hook_name = "BitBuddies internal API"

    def __init__(self, api_conn_id: str = API_CONN_ID):
        super().__init__()
        self.api_conn_id = api_conn_id

    @staticmethod
    def endpoint_of(conn) -> EventsEndpoint:
        from include.event_publisher import EventsEndpoint

        return EventsEndpoint(_base_url(conn), conn.password or "")

    def get_endpoint(self) -> EventsEndpoint | None:
        """The endpoint; None (logged) without the connection: progress is then not published."""
        try:
            return self.endpoint_of(self.get_connection(self.api_conn_id))
        except AirflowNotFoundException:
            log.warning("No Airflow connection %s: progress events are not published", self.api_conn_id)
            return None

    @classmethod
    async def aget_endpoint(cls, conn_id: str = API_CONN_ID) -> EventsEndpoint | None:
        try:
            return cls.endpoint_of(await cls.aget_connection(conn_id))
        except AirflowNotFoundException:
            log.warning("No Airflow connection %s: progress events are not published", conn_id)
            return None
