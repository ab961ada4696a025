"""Tests for include/review.py: which moderation results go to a person, and the user's sentence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from include.review import REJECTED_BY_REVIEW, Verdict, moderation_verdict
from include.settings import Settings
from include.user_messages import is_presentable

BAND = (0.30, 0.45)


@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        ({"nsfw": False, "score": 0.0}, Verdict.PASS),
        ({"nsfw": False, "score": 0.2999}, Verdict.PASS),
        ({"nsfw": False, "score": 0.30}, Verdict.REVIEW),  # the band includes its low end
        ({"nsfw": True, "score": 0.40}, Verdict.REVIEW),  # inside the band a person decides, whatever the model says
        ({"nsfw": True, "score": 0.45}, Verdict.REJECT),  # and excludes its high end
        ({"nsfw": True, "score": 0.97}, Verdict.REJECT),
        ({"nsfw": True}, Verdict.REJECT),  # a provider without a score: its flag stands
        ({}, Verdict.PASS),
    ],
)
def test_the_band_decides_what_a_person_reviews(result, verdict):
    assert moderation_verdict(result, BAND) is verdict


def test_an_empty_band_reviews_nothing():
    assert moderation_verdict({"nsfw": False, "score": 0.0}, (0.0, 0.0)) is Verdict.PASS
    assert moderation_verdict({"nsfw": True, "score": 0.5}, (0.0, 0.0)) is Verdict.REJECT


def test_the_band_and_timeout_are_settings(monkeypatch):
    assert Settings().review_band == BAND  # the default ends where the model's own threshold starts
    monkeypatch.setenv("BITBUDDIES_REVIEW_BAND", "[0.2, 0.6]")
    monkeypatch.setenv("BITBUDDIES_REVIEW_TIMEOUT", "45")
    assert (Settings().review_band, Settings().review_timeout) == ((0.2, 0.6), 45.0)
    monkeypatch.setenv("BITBUDDIES_REVIEW_BAND", "[0.6, 0.2]")
    with pytest.raises(ValidationError, match="low <= high"):
        Settings()


def test_the_users_sentence_reaches_them_word_for_word():
    assert is_presentable(REJECTED_BY_REVIEW) and "rejected by review" in REJECTED_BY_REVIEW
