"""Inputs and result of a provider call, shared by both clients."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProviderTarget:
    """One provider model and the credential to call it with.

    ``provider`` is a ``catalog.models.Provider`` value. An empty ``api_base``
    means the provider's public API. ``api_version`` is read for Azure OpenAI
    only. ``timeout`` is in seconds and bounds the whole call.
    """

    provider: str
    model: str
    api_key: str = field(repr=False)
    api_base: str = ""
    api_version: str = ""
    timeout: float = 60.0


@dataclass
class ChatResult:
    """A chat completion reduced to what the gateway records and returns.

    ``tool_calls`` are in the OpenAI shape (``id``, ``type``, ``function``
    with ``name`` and JSON-encoded ``arguments``). Token counts are 0 when the
    provider sent no usage.
    """

    content: str | None
    finish_reason: str | None
    tool_calls: list[dict] | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StreamChunk:
    """One piece of a streamed chat completion, in OpenAI's delta shape.

    ``delta`` holds only the fields the gateway relays (``role``, ``content``,
    ``tool_calls`` and similar), never provider-specific ones. ``usage`` is
    (prompt tokens, completion tokens) on the chunk that carries the
    provider's usage report, and None on the others.
    """

    delta: dict = field(default_factory=dict)
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
