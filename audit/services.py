"""Record administrative changes in the audit log.

Service functions record their own changes inside their transaction, so a
change and its entry are committed together. ``record`` never stores a
secret: values of secret fields are replaced by ``SECRET_MARKER``.
"""

import datetime
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.db import models

from audit.models import AuditEntry

# Stored in place of the value of a secret field that was set or changed.
SECRET_MARKER = "changed"
SECRET_FIELD_NAMES = frozenset(
    {"key", "digest", "secret", "token", "plaintext", "ciphertext", "password"}
)
SECRET_FIELD_SUFFIXES = ("_key", "_digest", "_secret", "_token", "_ciphertext")

# The object types of the audit log, by model label. Other models use their
# model name.
OBJECT_TYPES = {
    "teams.organization": "organization",
    "teams.team": "team",
    "teams.virtualkey": "key",
    "teams.credittransaction": "credit_transaction",
    "catalog.modelalias": "alias",
    "catalog.accessgroup": "access_group",
    "catalog.providercredential": "credential",
    "jobs.job": "job",
    "jobs.llmcall": "llm_call",
    "auth.user": "user",
    "auth.group": "group",
}
# Aliases and access groups are addressed by their names, which never change,
# and roles and permissions by their names, which read better than ids.
OBJECT_ID_FIELDS = {
    "catalog.modelalias": "alias",
    "catalog.accessgroup": "name",
    "auth.group": "name",
    "auth.permission": "codename",
}


@dataclass(frozen=True)
class Actor:
    """The maker of a change: a name for the log, the staff user, the address."""

    name: str
    user: models.Model | None = None
    ip_address: str | None = None


SYSTEM_ACTOR = Actor("system")


def actor_from_request(request) -> Actor:
    """Build the actor of a Django admin request: its signed-in user."""
    user = request.user
    return Actor(user.get_username(), user, client_address(request))


def client_address(request) -> str | None:
    """Return the client's address as the server saw it.

    Behind a reverse proxy this is the proxy's address unless the server
    trusts the proxy's X-Forwarded-For header (uvicorn's
    ``FORWARDED_ALLOW_IPS``).
    """
    return request.META.get("REMOTE_ADDR") or None


def is_secret_field(name: str) -> bool:
    name = name.lower()
    return (
        name in SECRET_FIELD_NAMES
        or "password" in name
        or name.endswith(SECRET_FIELD_SUFFIXES)
    )


def object_type_of(model) -> str:
    return OBJECT_TYPES.get(model._meta.label_lower, model._meta.model_name)


def object_id_of(obj: models.Model) -> str:
    field = OBJECT_ID_FIELDS.get(obj._meta.label_lower, "pk")
    return str(getattr(obj, field))


def audit_value(value):
    """Convert a field value to the JSON form stored in ``changes``.

    Rows become their audit id, and sets of rows a sorted list of ids, so
    the admin's form values and the services' values compare equal. Other
    lists keep their order.
    """
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, models.Model):
        return object_id_of(value)
    if isinstance(value, models.QuerySet | list | tuple | set | frozenset):
        is_unordered = isinstance(value, models.QuerySet | set | frozenset) or any(
            isinstance(item, models.Model) for item in value
        )
        items = [audit_value(item) for item in value]
        if is_unordered:
            items.sort(key=str)
        return items
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return value


def without_nul(text: str) -> str:
    # PostgreSQL stores no NUL character in text or JSON, and request bodies
    # and URLs may contain one.
    return text.replace("\x00", "\ufffd")


def redact(values: Mapping) -> dict:
    """Return ``values`` as JSON, with every secret field replaced by the marker.

    Nested objects are redacted too, because request bodies and metadata
    may carry secrets under any key.
    """
    return {
        without_nul(str(name)): (
            SECRET_MARKER if is_secret_field(str(name)) else audit_value(value)
        )
        for name, value in values.items()
    }


def diff_values(before: Mapping, after: Mapping) -> dict:
    """Return ``{field: [before, after]}`` for each field whose value changed.

    A field missing on one side counts as None there. A changed secret field
    maps to ``SECRET_MARKER`` instead of its values.
    """
    changes = {}
    for name in sorted({*before, *after}, key=str):
        old = audit_value(before.get(name))
        new = audit_value(after.get(name))
        if old == new:
            continue
        changes[name] = SECRET_MARKER if is_secret_field(str(name)) else [old, new]
    return changes


def snapshot(obj: models.Model, fields: Iterable[str]) -> dict:
    """Return the audit values of ``fields`` of ``obj``; foreign keys as ids."""
    values = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if field.many_to_many:
            value = getattr(obj, name).all()
        elif field.is_relation:
            value = getattr(obj, field.attname)
        else:
            value = getattr(obj, name)
        values[name] = audit_value(value)
    return values


def as_actor(actor: Actor | str | None) -> Actor:
    if actor is None:
        return SYSTEM_ACTOR
    if isinstance(actor, str):
        return Actor(actor)
    return actor


def record(
    *,
    actor: Actor | str | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    changes: Mapping | None = None,
    request=None,
) -> AuditEntry:
    """Write one audit entry for ``obj``, or for ``object_type`` and ``object_id``.

    ``changes`` is stored redacted. A None actor is the system itself, as
    for commands and scripts; ``request`` supplies the client's address when
    the actor carries none.
    """
    actor = as_actor(actor)
    if obj is not None:
        object_type = object_type or object_type_of(type(obj))
        object_id = object_id or object_id_of(obj)
    if not object_type:
        raise ValueError("record() needs obj or object_type.")
    ip_address = actor.ip_address
    if ip_address is None and request is not None:
        ip_address = client_address(request)

    user = actor.user if getattr(actor.user, "pk", None) is not None else None
    return AuditEntry.objects.create(
        actor=without_nul(actor.name)[:150],
        actor_user=user,
        action=action,
        object_type=object_type,
        object_id=without_nul(str(object_id))[:255],
        changes=redact(changes or {}),
        ip_address=ip_address,
    )
