"""The user's short prompt, read as a direction for the buddy: which motion, which look.

The prompt is free text ("make me wave hello in pastel colours"); this module picks the motion
and the style it asks for by keywords and synonyms, with safe defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from include.stages import DEFAULT_MOTION, MOTIONS

STYLES = ("classic", "pastel", "bold", "comic")
DEFAULT_STYLE = "classic"

# Word -> canonical value. Matched on whole words, so "highway" does not mean "hi".
_MOTION_WORDS = {
    "bounce": "bounce", "bouncing": "bounce", "bouncy": "bounce", "idle": "idle", "breathe": "idle",
    "breathing": "idle", "stand": "idle", "standing": "idle",
    "walk": "walk", "walking": "walk", "walks": "walk", "stroll": "walk", "strolling": "walk",
    "wave": "wave", "waving": "wave", "waves": "wave", "hi": "wave", "hello": "wave", "hey": "wave",
    "greet": "wave", "greeting": "wave", "greets": "wave", "bye": "wave", "goodbye": "wave",
    "jump": "jump", "jumping": "jump", "jumps": "jump", "hop": "jump", "hopping": "jump", "hops": "jump",
    "leap": "jump", "leaping": "jump",
    "dance": "dance", "dancing": "dance", "dances": "dance", "groove": "dance", "grooving": "dance",
    "party": "dance", "boogie": "dance", "disco": "dance",
    "sway": "sway", "swaying": "sway", "rock": "sway", "rocking": "sway", "chill": "sway", "calm": "sway",
    "relax": "sway", "relaxed": "sway",
}
_STYLE_WORDS = {
    "classic": "classic", "cartoon": "classic", "normal": "classic",
    "pastel": "pastel", "soft": "pastel", "cute": "pastel", "kawaii": "pastel", "gentle": "pastel",
    "bold": "bold", "vivid": "bold", "bright": "bold", "vibrant": "bold", "neon": "bold", "punchy": "bold",
    "comic": "comic", "comics": "comic", "manga": "comic", "anime": "comic", "ink": "comic", "inked": "comic",
    "superhero": "comic",
}


@dataclass(frozen=True)
class Direction:
    motion: str
    style: str
    prompt: str


def _first_match(words: list[str], table: dict[str, str], default: str) -> str:
    for word in words:
        if word in table:
            return table[word]
    return default


def parse_prompt(prompt: str) -> Direction:
    """Read the motion and the style out of a free-text prompt (first keyword wins)."""
    text = (prompt or "").strip()
    words = re.findall(r"[a-z]+", text.lower())
    return Direction(
        motion=_first_match(words, _MOTION_WORDS, DEFAULT_MOTION),
        style=_first_match(words, _STYLE_WORDS, DEFAULT_STYLE),
        prompt=text,
    )
