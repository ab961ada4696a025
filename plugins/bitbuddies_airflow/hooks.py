"""ModelProviderHook: the Airflow connection to a model provider, turned into a queue client.

One HTTP connection (default ``bitbuddies_models``) says where the provider is and how to
authenticate: host/port/schema give the queue base URL (``http://127.0.0.1:8200`` for the local
model server, ``https://queue.fal.run`` for fal.ai) and the password holds the key sent as
``Authorization: Key ...``. The connection's extra ``{"models": {"animate": "fal-ai/..."}}``
overrides the model id of any stage, so switching provider is configuration, not code.
"""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook

from include.model_queue import AsyncQueueClient, QueueClient
from include.settings import get_settings
from include.stages import MODEL_IDS

DEFAULT_CONN_ID = "bitbuddies_models"



def _base_url(conn) -> str:
    schema = conn.schema or "http"
    host = conn.host or "127.0.0.1"
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
