"""Human review of borderline photos: which moderation scores an operator decides, and what the user reads.

The moderation stage scores a photo (the highest detector score among exposed body parts, 0.0 when
none). A score inside the review band (setting ``review_band``, ``[low, high)``; the default
[0.30, 0.45) ends where the model's own rejection threshold starts) is neither passed
nor rejected by the machine: the generation waits for an operator's approval in Airflow's
"Required actions" (``plugins/bitbuddies_airflow/review.py``). Outside the band the model's own
verdict stands: flagged photos are rejected, the rest pass without any review step.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

# What the user reads when an operator rejects the photo or nobody answers in time.
REJECTED_BY_REVIEW = "Your photo was rejected by review, so no buddy was made and your token was given back."
NSFW_REJECTED = "This photo can't be used: it looks like it contains nudity."


class Verdict(StrEnum):
    PASS = "pass"
    REVIEW = "review"
    REJECT = "reject"


def moderation_verdict(result: dict[str, Any], band: tuple[float, float]) -> Verdict:
    """The moderation result's verdict: a score in ``band`` goes to review, whatever the model flagged."""
    score = float(result.get("score") or 0.0)
    if band[0] <= score < band[1]:  # an empty band ([0, 0]) reviews nothing
        return Verdict.REVIEW
    return Verdict.REJECT if result.get("nsfw") else Verdict.PASS


def review_subject(generation_id: str, score: float) -> str:
    return f"Borderline photo (score {score:.2f}): generation {generation_id}"


def review_body(score: float, band: tuple[float, float], photo_url: str, prompt: str) -> str:
    """The operator's brief, in Markdown (the Required actions page renders it)."""
    low, high = band
    return (
        f"The safety check scored this photo **{score:.2f}**, inside the review band [{low:.2f}, {high:.2f}).\n\n"
        f"Approve to make the buddy; reject (or leave it unanswered) to fail the generation and give the user's token back.\n\n"
        f"Prompt: {prompt}\n\n"
        f"[Open the photo]({photo_url})"
    )
