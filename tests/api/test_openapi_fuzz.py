"""Schemathesis over the whole OpenAPI document, against the app in-process (ASGI), signed in as a
test user with a finished buddy: no answer is a 5xx, and every answer has a documented status,
content type and body schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from api.deps import get_airflow_client
from api.main import app
from include.settings import get_settings

schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# 19 operations x 20 examples: ~1.5 min on a busy 2-core machine (116 s at 25 with load 19).
EXAMPLES = 20


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory):
    import os

    from include import quotas
    from include.db import reset_engine
    from include.migrations import migrate
    from ops.stack import LOAD_TEST_LIMITS
    from tests.api.fake_airflow import FakeAirflow
    from tests.api.routes.test_share_routes import published_generation
    from tests.api.support import make_user

    from tests.fakes.stripe_server import FakeStripe

    stripe = FakeStripe().start()  # payments configured: no 503 for want of Stripe keys
    saved = dict(os.environ)
    os.environ.update(
        {
            "BITBUDDIES_VAR_DIR": str(tmp_path_factory.mktemp("fuzz")),
            "STRIPE_API_KEY": stripe.api_key,
            "STRIPE_WEBHOOK_SECRET": stripe.webhook_secret,
            "BITBUDDIES_STRIPE_API_BASE": stripe.url,
            **LOAD_TEST_LIMITS,
        }
    )
    os.environ.pop("BITBUDDIES_DATABASE_URL", None)
    get_settings.cache_clear()
    reset_engine()
    quotas.reset()
    migrate()
    fake = FakeAirflow().start()
    from include.airflow_client import AirflowClient

    client = AirflowClient(base_url=fake.url, username="admin", password="admin", timeout=5)
    app.dependency_overrides[get_airflow_client] = lambda: client
    published_generation()
    _, key = make_user("fuzz@example.com", tokens=1000)
    yield {"Authorization": f"Bearer {key}"}
    app.dependency_overrides.clear()
    client.close()
    fake.stop()
    stripe.stop()
    os.environ.clear()
    os.environ.update(saved)
    reset_engine()
    get_settings.cache_clear()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, signed_in):
    if case.path.endswith("/events"):
        # An event stream of a running generation stays open by design; its answers are tested in tests/api/routes/test_events.py.
        case.headers = {**(case.headers or {}), "Last-Event-ID": "0"}
    checks = CHECKS
    if case.path == "/oembed":
        # oEmbed 1.0 answers an unsupported format with 501 (documented); not a server fault.
        checks = [check for check in CHECKS if check is not not_a_server_error]
    case.call_and_validate(headers={**signed_in, **(case.headers or {})}, checks=checks)
