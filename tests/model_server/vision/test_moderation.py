"""Tests for model_server/vision/moderation.py."""

from model_server.vision.moderation import moderate


def test_astronaut_is_not_flagged(astronaut):
    result = moderate(astronaut)
    assert result.nsfw is False and result.score < 0.45
    assert any(label["class"].startswith("FACE") for label in result.labels)
