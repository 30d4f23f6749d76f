"""Rebuild a whole chat completion from the chunks of its stream."""

from catalog.providers.base import ChatResult, StreamChunk
from catalog.providers.tokens import count_prompt_tokens, count_text_tokens


class StreamAccumulator:
    """The content, tool calls, finish reason and usage of a stream so far."""

    def __init__(self):
        self.content_parts: list[str] = []
        self.tool_calls: dict[int, dict] = {}
        self.finish_reason: str | None = None
        self.usage: tuple[int, int] | None = None
        self.chunk_count = 0

    def add(self, chunk: StreamChunk) -> None:
        self.chunk_count += 1
        content = chunk.delta.get("content")
        if isinstance(content, str):
            self.content_parts.append(content)
        for call in chunk.delta.get("tool_calls") or []:
            self._add_tool_call(call)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage

    def _add_tool_call(self, delta: dict) -> None:
        index = delta.get("index", len(self.tool_calls))
        if not isinstance(index, int):
            index = len(self.tool_calls)
        call = self.tool_calls.setdefault(
            index,
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        if isinstance(function.get("name"), str):
            call["function"]["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]

    @property
    def content(self) -> str | None:
        if not self.content_parts and self.tool_calls:
            return None
        return "".join(self.content_parts)

    def result(self, messages: list[dict]) -> tuple[ChatResult, bool]:
        """Return the completion so far and whether its usage is estimated.

        Without a usage report from the provider, tokens are counted locally
        from the request's messages and the text received so far.
        """
        tool_calls = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
            estimated = False
        else:
            prompt_tokens = count_prompt_tokens(messages)
            completion_tokens = count_text_tokens("".join(self.content_parts)) + sum(
                count_text_tokens(
                    call["function"]["name"] + call["function"]["arguments"]
                )
                for call in tool_calls
            )
            estimated = True
        result = ChatResult(
            content=self.content,
            finish_reason=self.finish_reason,
            tool_calls=tool_calls or None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        return result, estimated
