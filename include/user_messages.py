"""What a user may read about a failure: one short sentence with nothing internal in it.

Pipeline errors reach people through the progress stream, the ``/g/{id}`` page and the API. Only
business errors written for them (an NSFW photo, no person found) pass through word for word;
exception text, file paths, presigned URLs and reprs are replaced by a fixed phrase (the
operator still has the task's log). ``include.generations`` and ``include.events`` apply this to
everything they store, whoever calls them.
"""

from __future__ import annotations

import re

GENERIC = "Something went wrong on our side while making your buddy."

# URLs, absolute or home paths, Windows paths, markup or dict reprs, errno text, exception names
# and calls: never shown to users.
_INTERNAL = re.compile(r"://|(^|[\s'\"(=:])[/~][\w.-]+/|\\|[<>{}]|\[Errno|Traceback|Error\b|Exception\b|\w+\(.*\)")
MAX_CHARS = 300


def is_presentable(message: str | None) -> bool:
    text = (message or "").strip()
    return 0 < len(text) <= MAX_CHARS and "\n" not in text and not _INTERNAL.search(text)


def presentable(message: str | None, fallback: str = GENERIC) -> str:
    """``message`` if a user may read it, else ``fallback``."""
    return message.strip() if message is not None and is_presentable(message) else fallback


def is_plain_text(text: str) -> bool:
    """No control characters (C0 other than tab and newline, DEL, C1): text fit to show or print."""
    return not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0 for c in text)
