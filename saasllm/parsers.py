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
        errors = invalid_value_errors(data)
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


def invalid_value_errors(data) -> dict:
    """Map each top-level field with U+0000 or an infinite number in it to its errors.

    A key with U+0000, or an invalid value in a body that is not an object,
    is reported under ``non_field_errors``. The body is walked once for both
    checks.
    """
    if not isinstance(data, dict):
        messages = failed_checks(data)
        return {"non_field_errors": messages} if messages else {}

    errors = {}
    for key, value in data.items():
        if has_null_character(key):
            errors["non_field_errors"] = [NULL_CHARACTER_MESSAGE]
            continue
        messages = failed_checks(value)
        if messages:
            errors[key] = messages
    return errors


def has_null_character(item) -> bool:
    return isinstance(item, str) and "\x00" in item


def is_infinite(item) -> bool:
    return isinstance(item, float) and math.isinf(item)


# The checks of every string and number in a body, each with the error of a
# field that fails it, in the order the errors are listed.
VALUE_CHECKS = (
    (has_null_character, NULL_CHARACTER_MESSAGE),
    (is_infinite, NON_FINITE_MESSAGE),
)


def failed_checks(value) -> list[str]:
    """Return the errors of the checks that ``value`` fails.

    Everything in ``value`` is checked, dict keys included.
    """
    failed = set()
    pending = [value]
    while pending:
        item = pending.pop()
        failed.update(message for check, message in VALUE_CHECKS if check(item))
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return [message for _, message in VALUE_CHECKS if message in failed]
