"""Request body parsing for the API."""

import math
from itertools import chain

from rest_framework import parsers

from saasllm.errors import ApiError, ValidationFailed

# Deepest nesting of objects and arrays accepted in a JSON body. Chat
# messages and tool schemas nest far less than this. Near 1,000
# levels the json module exceeds Python's recursion limit, and any later
# code that walks the data recursively has even less room.
MAX_JSON_DEPTH = 100
# DRF's CharField rejects U+0000 with this message. PostgreSQL cannot store it
# in text or jsonb, so the parser rejects it in every string of a body.
NULL_CHARACTER_MESSAGE = "Null characters are not allowed."
# Python parses a number beyond the range of a double, such as 1e999, as
# infinity, which neither JSON nor PostgreSQL's jsonb can store.
NON_FINITE_MESSAGE = "Numbers must be finite: at most about 1.8e308 in size."


class JSONTooDeep(ApiError):
    code = "json_too_deep"
    message = f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a nesting limit, without U+0000 or infinite numbers."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise JSONTooDeep() from None
        if exceeds_depth(data, MAX_JSON_DEPTH):
            raise JSONTooDeep()
        errors = null_character_errors(data)
        for field, messages in field_errors(
            data, is_infinite, NON_FINITE_MESSAGE
        ).items():
            errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationFailed(errors)
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


def null_character_errors(data) -> dict:
    """Map each top-level field that contains U+0000 to a validation error.

    A key with U+0000, or U+0000 in a body that is not an object, is reported
    under ``non_field_errors``.
    """
    return field_errors(data, has_null_character, NULL_CHARACTER_MESSAGE)


def field_errors(data, is_invalid, message: str) -> dict:
    """Map each top-level field with a value or key that ``is_invalid`` to ``message``.

    An invalid key, or an invalid value in a body that is not an object, is
    reported under ``non_field_errors``.
    """
    if not isinstance(data, dict):
        if contains(data, is_invalid):
            return {"non_field_errors": [message]}
        return {}

    errors = {}
    for key, value in data.items():
        if is_invalid(key):
            errors["non_field_errors"] = [message]
        elif contains(value, is_invalid):
            errors[key] = [message]
    return errors


def has_null_character(item) -> bool:
    return isinstance(item, str) and "\x00" in item


def is_infinite(item) -> bool:
    return isinstance(item, float) and math.isinf(item)


def contains(value, is_invalid) -> bool:
    """Return whether ``is_invalid`` holds for ``value`` or anything in it, keys too."""
    pending = [value]
    while pending:
        item = pending.pop()
        if is_invalid(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
