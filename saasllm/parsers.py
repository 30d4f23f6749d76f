"""Request body parsing for the API."""

from itertools import chain

from rest_framework import parsers

from saasllm.errors import ApiError

# Deepest nesting of objects and arrays accepted in a JSON body. Chat
# messages and tool schemas nest far less than this. Near 1,000
# levels the json module exceeds Python's recursion limit, and any later
# code that walks the data recursively has even less room.
MAX_JSON_DEPTH = 100


class JSONTooDeep(ApiError):
    code = "json_too_deep"
    message = f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a limit on nesting depth."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise JSONTooDeep() from None
        if exceeds_depth(data, MAX_JSON_DEPTH):
            raise JSONTooDeep()
        return data


def exceeds_depth(value, limit: int) -> bool:
    """Return whether ``value`` nests lists and dicts more than ``limit`` deep.

    Walks one level at a time instead of recursing, so the check itself
    cannot hit the recursion limit. It takes about as long as the parse itself.
    """
    level = [value]
    for _ in range(limit):
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        level = list(
            chain.from_iterable(
                item.values() if isinstance(item, dict) else item for item in containers
            )
        )
    return any(isinstance(item, (dict, list)) for item in level)
