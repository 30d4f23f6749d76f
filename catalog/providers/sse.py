"""Server-sent events: a decoder for provider streams and an encoder for replies.

The decoder follows the WHATWG event-stream rules that LLM providers use:
``event:`` and ``data:`` fields, multi-line data joined by newlines, comments
starting with a colon, and a blank line ending each event.
"""

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str | None
    data: str


class SSEDecoder:
    """Turn a byte stream into events, whatever the network split."""

    def __init__(self, max_buffer_bytes: int):
        self.max_buffer_bytes = max_buffer_bytes
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Add bytes and return the events they complete.

        Raises ValueError when one line grows past ``max_buffer_bytes``.
        """
        self._buffer += data
        events = []
        while True:
            line, separator, rest = self._buffer.partition(b"\n")
            if not separator:
                break
            self._buffer = rest
            event = self._read_line(line.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        if len(self._buffer) > self.max_buffer_bytes:
            raise ValueError(
                f"An event-stream line exceeds {self.max_buffer_bytes} bytes."
            )
        return events

    def close(self) -> list[ServerSentEvent]:
        """Return the event left unterminated when the stream ended, if any."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._dispatch()
        return events + ([event] if event else [])

    def _read_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent(event=self._event, data="\n".join(self._data))
        self._event = None
        self._data = []
        return event


def encode_event(payload: dict | str, *, event: str | None = None) -> bytes:
    """Encode one event; a dict is sent as compact JSON on one data line."""
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, separators=(",", ":"))
    )
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()
