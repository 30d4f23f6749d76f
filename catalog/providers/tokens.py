"""Local token counts, for streams whose provider reports no usage.

Counts use OpenAI's cl100k_base encoding through tiktoken, read from the
copy that litellm 1.110.2 ships in ``litellm/litellm_core_utils/tokenizers``,
so nothing is downloaded. Other providers tokenize differently, so the count
is an estimate and calls store it with ``usage_estimated`` set. Without that
file the count falls back to one token per four characters.
"""

import functools
import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# tiktoken names its cache files by the SHA-1 of the encoding's download URL;
# this is the name of cl100k_base.
CL100K_CACHE_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
CHARACTERS_PER_TOKEN = 4
# Estimated tokens that chat formatting adds to each message and to prime
# the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@functools.cache
def _encoding():
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    bundled = (
        Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
    )
    # tiktoken reads TIKTOKEN_CACHE_DIR on every load; litellm sets the same
    # value when it is imported.
    directory = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled)))
    if not (directory / CL100K_CACHE_FILE).is_file():
        logger.warning(
            "No cl100k_base file in %s; counting tokens as characters / %d",
            directory,
            CHARACTERS_PER_TOKEN,
        )
        return None
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_text_tokens(text: str) -> int:
    """Return the tokens of ``text`` by cl100k_base, or by characters / 4."""
    if not text:
        return 0
    encoding = _encoding()
    if encoding is None:
        return -(-len(text) // CHARACTERS_PER_TOKEN)
    return len(encoding.encode(text, disallowed_special=()))


def count_prompt_tokens(messages: list[dict]) -> int:
    """Return the estimated prompt tokens of a chat request's messages."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_text_tokens(_message_text(message))
    return total


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    parts = [content if isinstance(content, str) else ""]
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(str(function.get("name") or ""))
            parts.append(str(function.get("arguments") or ""))
    return " ".join(part for part in parts if part)
