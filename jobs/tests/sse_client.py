"""A small server-sent events client for tests, with arrival times."""

import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class ReceivedEvent:
    event: str | None
    data: str
    arrived: float

    @property
    def json(self):
        return json.loads(self.data)


@dataclass
class StreamReply:
    status: int
    headers: httpx.Headers
    events: list[ReceivedEvent] = field(default_factory=list)
    body: bytes = b""

    @property
    def chunks(self) -> list[dict]:
        """The chat.completion.chunk objects, in order."""
        return [
            event.json
            for event in self.events
            if event.event is None
            and event.data != "[DONE]"
            and event.json.get("object") == "chat.completion.chunk"
        ]

    @property
    def content_events(self) -> list[ReceivedEvent]:
        return [
            event
            for event in self.events
            if event.event is None
            and event.data != "[DONE]"
            and event.json.get("choices")
            and event.json["choices"][0]["delta"].get("content")
        ]

    @property
    def text(self) -> str:
        return "".join(
            event.json["choices"][0]["delta"]["content"]
            for event in self.content_events
        )

    def named(self, name: str) -> list[dict]:
        return [event.json for event in self.events if event.event == name]

    @property
    def errors(self) -> list[dict]:
        return [
            event.json
            for event in self.events
            if event.event is None and event.data != "[DONE]" and "error" in event.json
        ]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].data == "[DONE]"


def stream_post(
    base_url: str,
    path: str,
    body: dict,
    key: str,
    *,
    stop_after_chunks: int | None = None,
    headers: dict | None = None,
    timeout: float = 30,
) -> StreamReply:
    """POST and read the reply's events as they arrive.

    With ``stop_after_chunks`` the client closes the connection after that
    many content chunks, as a client that goes away would.
    """
    request_headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "POST", base_url + path, json=body, headers=request_headers
        ) as response,
    ):
        reply = StreamReply(status=response.status_code, headers=response.headers)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            reply.body = response.read()
            return reply
        name, data = None, []
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data.append(line.partition(":")[2].removeprefix(" "))
            elif not line and data:
                reply.events.append(
                    ReceivedEvent(name, "\n".join(data), time.monotonic())
                )
                name, data = None, []
                if (
                    stop_after_chunks is not None
                    and len(reply.content_events) >= stop_after_chunks
                ):
                    break
    return reply
