"""Log formatters: one JSON object per line, or plain text for development.

Both add the record's extra fields, those passed with ``extra=`` or set by a
filter such as ``request_id``. Only strings, numbers and booleans are
written: an object passed as an extra (Django passes the request itself) is
left out, so its repr cannot leak headers or query strings into the log.

This module imports only the standard library, so gunicorn's own logging
configuration can load it before Django starts.
"""

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record is an extra field.
# uvicorn adds color_message, its message with terminal color codes.
STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))
) | {"message", "asctime", "taskName", "color_message"}


def extra_fields(record: logging.LogRecord) -> dict:
    """Return the record's extra fields whose values are strings, numbers or booleans."""
    return {
        name: value
        for name, value in vars(record).items()
        if name not in STANDARD_ATTRIBUTES
        and not name.startswith("_")
        and isinstance(value, str | int | float | bool)
    }


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line.

    The keys are ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    then the extra fields, then ``exception`` or ``stack`` when present. An
    extra field cannot replace one of the first four.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Format ``<time> <level> <logger> <message>``, then the extra fields as key=value."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = extra_fields(record)
        if not fields:
            return text
        pairs = " ".join(f"{name}={value}" for name, value in fields.items())
        return f"{text} {pairs}"
