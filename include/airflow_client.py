"""A small synchronous client for Airflow's REST API v2: trigger and read DAG runs.

The API uses it to start one ``bitbuddies_generate`` run per generation. The generation id
is the ``dag_run_id``, so a trigger is idempotent: a 409 (the run already exists) counts as
success and the existing run is returned.

Auth is Airflow 3's JWT flow: ``POST /auth/token`` with username and password, then
``Authorization: Bearer``; the token is cached and the client logs in again once on a 401
(tokens expire after ``[api_auth] jwt_expiration_time``).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from include.settings import get_settings


class AirflowUnavailable(Exception):
    """Airflow cannot be reached or answered with a server error: try again later."""


class AirflowError(Exception):
    """Airflow refused the request (4xx other than an already-existing run)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class AirflowClient:
    def __init__(
        self,
        base_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = get_settings()
        self.base_url = (base_url or settings.airflow_url).rstrip("/")
        self._username = username if username is not None else settings.airflow_username
        self._password = password if password is not None else settings.airflow_password.get_secret_value()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._token: str | None = None
        # The API's trigger loop and request threads share one client.
        self._token_lock = threading.Lock()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- public calls --------------------------------------------------------------------

    def trigger_dag_run(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """Create the run ``run_id`` of ``dag_id``, or return it when it already exists."""
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        response = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code == 409:
            return self.get_dag_run(dag_id, run_id)
        self._raise_for_status(response, f"triggering {dag_id} run {run_id}")
        return response.json()

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        response = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        self._raise_for_status(response, f"reading {dag_id} run {run_id}")
        return response.json()

    # --- plumbing ------------------------------------------------------------------------

    def _login(self) -> str:
        try:
            response = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
        except httpx.HTTPError as exc:
            raise AirflowUnavailable(f"Airflow at {self.base_url} is unreachable: {exc}") from exc
        self._raise_for_status(response, "logging in")
        token = response.json().get("access_token")
        if not token:
            raise AirflowError("Airflow's /auth/token answered without an access_token", response.status_code)
        return token

    def _current_token(self, *, renew: bool) -> str:
        with self._token_lock:
            if renew or self._token is None:
                self._token = self._login()
            return self._token

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, self._current_token(renew=False), **kwargs)
        if response.status_code == 401:
            response = self._send(method, path, self._current_token(renew=True), **kwargs)
        return response

    def _send(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            raise AirflowUnavailable(f"Airflow at {self.base_url} is unreachable: {exc}") from exc

    @staticmethod
    def _raise_for_status(response: httpx.Response, doing: str) -> None:
        if response.status_code >= 500:
            raise AirflowUnavailable(f"Airflow failed while {doing}: HTTP {response.status_code} {response.text[:300]}")
        if response.status_code >= 400:
            raise AirflowError(
                f"Airflow refused {doing}: HTTP {response.status_code} {response.text[:300]}", response.status_code
            )
