"""Fixtures for sticker sheet and print vendor tests."""

from __future__ import annotations

import pytest

from fulfillment.sheet import Sticker
from tests.fulfillment.fake_printful import FakePrintful
from tests.fulfillment.support import sample_stickers


@pytest.fixture(scope="session")
def stickers() -> list[Sticker]:
    return sample_stickers()


@pytest.fixture
def fake_printful():
    server = FakePrintful().start()
    yield server
    server.stop()
