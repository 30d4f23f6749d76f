"""Writes to model aliases, access groups and provider credentials.

Each function runs in one transaction and records an audit entry in it, so
the admin API and the Django admin, which both call these functions, leave
the same trail. ``actor`` is who made the change, None for the system.
Unique-constraint violations become 409 ``already_exists`` here, so a race
between two identical requests gives one success and one conflict instead
of a server error.

Each function starts by replacing the catalog token (``catalog.cache``), so
every process drops its cached catalog once the change commits. That first
statement also locks the token's row, so concurrent calls of these
functions queue there before they lock any other row, which rules out
deadlocks between them.
"""

import logging
from collections.abc import Iterable

from django.db import IntegrityError, transaction

from audit.services import SECRET_MARKER, Actor, diff_values, record, snapshot
from catalog.cache import bump_catalog_version
from catalog.crypto import encrypt_secret
from catalog.models import MAX_FALLBACKS, AccessGroup, ModelAlias, ProviderCredential
from saasllm.errors import Conflict, ValidationFailed
from teams.models import Organization

logger = logging.getLogger(__name__)

MODEL_ALIAS_FIELDS = frozenset(
    {
        "display_name",
        "provider",
        "provider_model",
        "description",
        "input_price_per_million",
        "output_price_per_million",
        "status",
        "timeout_seconds",
        "max_retries",
        "retry_backoff_ms",
        "fallbacks",
    }
)
ROUTING_FIELDS = frozenset(
    {"timeout_seconds", "max_retries", "retry_backoff_ms", "fallbacks"}
)
ACCESS_GROUP_FIELDS = frozenset({"display_name", "description", "status"})
CREDENTIAL_FIELDS = frozenset(
    {"name", "api_base", "api_version", "is_active", "updated_by"}
)
# Fields of the audit entries of each model. The credential's stored key is
# recorded as "api_key": "changed" when it is set, never as a value.
ALIAS_AUDIT_FIELDS = ("alias", *sorted(MODEL_ALIAS_FIELDS), "access_groups")
GROUP_AUDIT_FIELDS = ("name", *sorted(ACCESS_GROUP_FIELDS), "aliases")
CREDENTIAL_AUDIT_FIELDS = (
    "organization",
    "provider",
    "name",
    "api_base",
    "api_version",
    "is_active",
)


def _check_fields(fields: dict, allowed: frozenset, function: str) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"{function} cannot change {sorted(unknown)}.")


def _update_fields(instance, fields: dict) -> None:
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.save(update_fields=[*fields, "updated_at"])


def _stored_values(instance, fields) -> dict:
    """Return the stored values of ``fields``, locking the row until commit.

    The admin's form has already set its new values on ``instance``, so the
    values before the change are read from the database. The lock makes a
    concurrent change of the same row wait, so both entries are accurate.
    """
    stored = type(instance).objects.select_for_update().get(pk=instance.pk)
    return snapshot(stored, fields)


def _record_change(actor, action: str, instance, before: dict, fields) -> None:
    """Record the change of ``instance`` since ``before``, if any field changed."""
    changes = diff_values(before, snapshot(instance, fields))
    if changes:
        record(actor=actor, action=action, obj=instance, changes=changes)


def _record_deletion(actor, action: str, instance, fields) -> None:
    before = snapshot(instance, fields)
    record(actor=actor, action=action, obj=instance, changes=diff_values(before, {}))


@transaction.atomic
def create_model_alias(
    *,
    alias: str,
    provider: str,
    provider_model: str,
    display_name: str = "",
    description: str = "",
    input_price_per_million=None,
    output_price_per_million=None,
    status: str = ModelAlias.Status.ACTIVE,
    access_groups: Iterable[AccessGroup] = (),
    actor: Actor | str | None = None,
    **routing,
) -> ModelAlias:
    """Create an alias and add it to the given access groups.

    A price of None means the gateway prices calls from litellm's cost map.
    ``routing`` holds the optional retry settings (``timeout_seconds``,
    ``max_retries``, ``retry_backoff_ms``) and ``fallbacks``.
    """
    bump_catalog_version()
    _check_fields(routing, ROUTING_FIELDS, "create_model_alias")
    if "fallbacks" in routing:
        routing["fallbacks"] = validated_fallbacks(alias, routing["fallbacks"])
    try:
        model_alias = ModelAlias.objects.create(
            alias=alias,
            display_name=display_name,
            provider=provider,
            provider_model=provider_model,
            description=description,
            input_price_per_million=input_price_per_million,
            output_price_per_million=output_price_per_million,
            status=status,
            **routing,
        )
    except IntegrityError:
        raise Conflict(
            f"Model alias {alias} already exists.", code="already_exists"
        ) from None

    model_alias.access_groups.set(access_groups)
    after = snapshot(model_alias, ALIAS_AUDIT_FIELDS)
    record(
        actor=actor,
        action="alias.create",
        obj=model_alias,
        changes=diff_values({}, after),
    )
    logger.info("Created model alias %s", alias)
    return model_alias


def validated_fallbacks(alias: str, fallbacks: list) -> list[str]:
    """Return ``fallbacks`` if they name distinct existing aliases, else raise 422.

    An alias cannot fall back to itself. Fallbacks are not followed
    further, so a fallback's own fallbacks never run for this alias.
    """
    if not isinstance(fallbacks, list) or not all(
        isinstance(name, str) for name in fallbacks
    ):
        raise ValidationFailed({"fallbacks": ["Send a list of alias names."]})
    problems = []
    if len(fallbacks) > MAX_FALLBACKS:
        problems.append(f"Name at most {MAX_FALLBACKS} fallback aliases.")
    if alias in fallbacks:
        problems.append("An alias cannot be its own fallback.")
    if len(set(fallbacks)) != len(fallbacks):
        problems.append("Each fallback alias may appear once.")
    existing = set(
        ModelAlias.objects.filter(alias__in=fallbacks).values_list("alias", flat=True)
    )
    missing = [name for name in fallbacks if name not in existing]
    if missing:
        problems.append("Unknown model aliases: " + ", ".join(sorted(missing)) + ".")
    if problems:
        raise ValidationFailed({"fallbacks": problems})
    return fallbacks


@transaction.atomic
def update_model_alias(
    *,
    model_alias: ModelAlias,
    fields: dict,
    access_groups: Iterable[AccessGroup] | None = None,
    actor: Actor | str | None = None,
) -> ModelAlias:
    """Change an alias and, unless None, replace the groups that contain it."""
    bump_catalog_version()
    _check_fields(fields, MODEL_ALIAS_FIELDS, "update_model_alias")
    if "fallbacks" in fields:
        fields = {
            **fields,
            "fallbacks": validated_fallbacks(model_alias.alias, fields["fallbacks"]),
        }
    before = _stored_values(model_alias, ALIAS_AUDIT_FIELDS)

    _update_fields(model_alias, fields)
    if access_groups is not None:
        model_alias.access_groups.set(access_groups)
    _record_change(actor, "alias.update", model_alias, before, ALIAS_AUDIT_FIELDS)
    logger.info("Updated model alias %s: %s", model_alias.alias, sorted(fields))
    return model_alias


@transaction.atomic
def delete_model_alias(
    *, model_alias: ModelAlias, actor: Actor | str | None = None
) -> None:
    """Delete an alias and its group memberships.

    Past calls keep the alias name as text, so their history stays intact.
    """
    bump_catalog_version()
    _record_deletion(actor, "alias.delete", model_alias, ALIAS_AUDIT_FIELDS)
    # No alias may keep falling back to one that no longer exists.
    # The catalog is small, and JSON containment lookups differ between
    # PostgreSQL and SQLite, so the fallback lists are read here.
    for other in ModelAlias.objects.exclude(pk=model_alias.pk).select_for_update():
        if model_alias.alias not in other.fallbacks:
            continue
        before = _stored_values(other, ALIAS_AUDIT_FIELDS)
        other.fallbacks = [
            name for name in other.fallbacks if name != model_alias.alias
        ]
        other.save(update_fields=["fallbacks", "updated_at"])
        _record_change(actor, "alias.update", other, before, ALIAS_AUDIT_FIELDS)
    model_alias.delete()
    logger.info("Deleted model alias %s", model_alias.alias)


@transaction.atomic
def create_access_group(
    *,
    name: str,
    display_name: str = "",
    description: str = "",
    aliases: Iterable[ModelAlias] = (),
    actor: Actor | str | None = None,
) -> AccessGroup:
    bump_catalog_version()
    try:
        group = AccessGroup.objects.create(
            name=name, display_name=display_name, description=description
        )
    except IntegrityError:
        raise Conflict(
            f"Access group {name} already exists.", code="already_exists"
        ) from None

    group.aliases.set(aliases)
    after = snapshot(group, GROUP_AUDIT_FIELDS)
    record(
        actor=actor,
        action="access_group.create",
        obj=group,
        changes=diff_values({}, after),
    )
    logger.info("Created access group %s", name)
    return group


@transaction.atomic
def update_access_group(
    *, group: AccessGroup, fields: dict, actor: Actor | str | None = None
) -> AccessGroup:
    bump_catalog_version()
    _check_fields(fields, ACCESS_GROUP_FIELDS, "update_access_group")
    before = _stored_values(group, GROUP_AUDIT_FIELDS)

    _update_fields(group, fields)
    _record_change(actor, "access_group.update", group, before, GROUP_AUDIT_FIELDS)
    logger.info("Updated access group %s: %s", group.name, sorted(fields))
    return group


@transaction.atomic
def set_access_group_aliases(
    *,
    group: AccessGroup,
    aliases: Iterable[ModelAlias],
    actor: Actor | str | None = None,
) -> AccessGroup:
    """Replace the aliases of a group."""
    bump_catalog_version()
    before = _stored_values(group, GROUP_AUDIT_FIELDS)

    group.aliases.set(aliases)
    _update_fields(group, {})
    _record_change(actor, "access_group.update", group, before, GROUP_AUDIT_FIELDS)
    logger.info("Replaced the aliases of access group %s", group.name)
    return group


@transaction.atomic
def delete_access_group(
    *, group: AccessGroup, actor: Actor | str | None = None
) -> None:
    """Delete a group, or raise 409 naming the teams that still use it.

    The group's row lock makes a concurrent delete of the same group wait.
    """
    bump_catalog_version()
    group = AccessGroup.objects.select_for_update().get(pk=group.pk)
    team_ids = list(group.teams.order_by("id").values_list("id", flat=True))
    if team_ids:
        raise Conflict(
            f"Access group {group.name} is assigned to teams {', '.join(team_ids)}. "
            "Remove it from those teams first.",
            code="in_use",
        )

    _record_deletion(actor, "access_group.delete", group, GROUP_AUDIT_FIELDS)
    group.delete()
    logger.info("Deleted access group %s", group.name)


def _active_credential_conflict(organization_id: str, provider: str) -> Conflict:
    return Conflict(
        f"Organization {organization_id} already has an active {provider} "
        "credential. Deactivate it first.",
        code="already_exists",
    )


@transaction.atomic
def create_provider_credential(
    *,
    organization: Organization,
    provider: str,
    api_key: str,
    name: str,
    api_base: str = "",
    api_version: str = "",
    created_by: str = "",
    actor: Actor | str | None = None,
) -> ProviderCredential:
    """Store an organization's provider key, encrypted, as its active credential.

    Raises 409 when the organization already has an active credential for
    the provider.
    """
    bump_catalog_version()
    # The partial unique constraint credential_one_active_per_provider is the
    # only unique constraint besides the random primary key, so any
    # IntegrityError here is a second active credential.
    try:
        credential = ProviderCredential.objects.create(
            organization=organization,
            provider=provider,
            name=name,
            encrypted_api_key=encrypt_secret(api_key),
            api_base=api_base,
            api_version=api_version,
            created_by=created_by,
            updated_by=created_by,
        )
    except IntegrityError:
        raise _active_credential_conflict(organization.id, provider) from None

    after = snapshot(credential, CREDENTIAL_AUDIT_FIELDS)
    record(
        actor=actor,
        action="credential.create",
        obj=credential,
        changes={**diff_values({}, after), "api_key": SECRET_MARKER},
    )
    logger.info(
        "Created %s credential %s for organization %s",
        provider,
        credential.id,
        organization.id,
    )
    return credential


@transaction.atomic
def update_provider_credential(
    *,
    credential: ProviderCredential,
    fields: dict,
    api_key: str | None = None,
    actor: Actor | str | None = None,
    action: str = "credential.update",
) -> ProviderCredential:
    """Change a credential; a new ``api_key`` is encrypted before it is stored.

    Raises 409 when activating it would give its organization two active
    credentials for one provider. ``action`` names the audit entry.
    """
    bump_catalog_version()
    _check_fields(fields, CREDENTIAL_FIELDS, "update_provider_credential")
    before = _stored_values(credential, CREDENTIAL_AUDIT_FIELDS)
    if api_key is not None:
        fields = {**fields, "encrypted_api_key": encrypt_secret(api_key)}

    try:
        with transaction.atomic():
            _update_fields(credential, fields)
    except IntegrityError:
        raise _active_credential_conflict(
            credential.organization_id, credential.provider
        ) from None

    changes = diff_values(before, snapshot(credential, CREDENTIAL_AUDIT_FIELDS))
    if api_key is not None:
        changes["api_key"] = SECRET_MARKER
    if changes:
        record(actor=actor, action=action, obj=credential, changes=changes)
    # Log field names only: the key itself must never reach a log.
    logger.info(
        "Updated credential %s: %s",
        credential.id,
        sorted(name for name in fields if name != "encrypted_api_key")
        + (["api_key"] if api_key is not None else []),
    )
    return credential


def set_provider_credential_active(
    *,
    credential: ProviderCredential,
    is_active: bool,
    updated_by: str = "",
    actor: Actor | str | None = None,
) -> ProviderCredential:
    """Activate or deactivate a credential, or raise 409 on a second active one."""
    return update_provider_credential(
        credential=credential,
        fields={"is_active": is_active, "updated_by": updated_by},
        actor=actor,
        action="credential.activate" if is_active else "credential.deactivate",
    )


@transaction.atomic
def delete_provider_credential(
    *, credential: ProviderCredential, actor: Actor | str | None = None
) -> None:
    bump_catalog_version()
    _record_deletion(actor, "credential.delete", credential, CREDENTIAL_AUDIT_FIELDS)
    credential.delete()
    logger.info("Deleted credential %s", credential.id)
