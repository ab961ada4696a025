"""Reading a Server-Sent Events stream (``text/event-stream``): the CLI's ``generate`` progress
bar, the tests and the benchmarks read the API's progress streams with it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class ReceivedEvent:
    id: str | None
    event: str
    data: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[ReceivedEvent]:
    """Events from the lines of a ``text/event-stream`` body (comments skipped)."""
    event_id, event_type, data = None, "message", []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield ReceivedEvent(event_id, event_type, "\n".join(data))
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
