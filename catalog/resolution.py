"""Resolve a team's model alias to the provider target that serves it."""

import logging

from django.conf import settings
from django.db.models import QuerySet

from catalog.crypto import DecryptionFailed, decrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.providers import ProviderTarget
from catalog.providers.routing import Candidate, RetryPolicy
from saasllm.errors import ApiError, Forbidden
from teams.models import Team

logger = logging.getLogger(__name__)


class ModelUnavailable(ApiError):
    status_code = 503
    code = "model_unavailable"
    message = "The model is temporarily unavailable. Retry later or contact your administrator."


def aliases_for_team(team: Team) -> QuerySet[ModelAlias]:
    """Return the active aliases that the team's active access groups grant."""
    return ModelAlias.objects.filter(
        status=ModelAlias.Status.ACTIVE,
        access_groups__status=AccessGroup.Status.ACTIVE,
        access_groups__teams=team,
    ).distinct()


def resolve_alias(*, team: Team, alias_name: str) -> ModelAlias:
    """Return the active alias if one of the team's active access groups grants it.

    An unknown alias and one the team may not use give the same 403, so a
    team cannot probe the catalog.
    """
    alias = aliases_for_team(team).filter(alias=alias_name).first()
    if alias is None:
        raise Forbidden(
            f"The model '{alias_name}' is not available to this team.",
            code="model_not_allowed",
        )
    return alias


def route_for_alias(*, team: Team, alias: ModelAlias) -> list[Candidate]:
    """Return the candidates that can serve ``alias``: itself, then its fallbacks.

    Fallbacks are the alias's ``fallbacks`` that exist and are active, in
    their order. The team needs no access group for them, because an
    administrator chose them for an alias the team may use. A candidate whose
    organization has no working credential for its provider is left out and
    logged for the operator. Raises ModelUnavailable (503) when none is left.
    Runs two queries, or one when the alias has no fallbacks.
    """
    names = [name for name in alias.fallbacks or [] if name != alias.alias]
    chain = [alias]
    if names:
        found = ModelAlias.objects.filter(
            alias__in=names, status=ModelAlias.Status.ACTIVE
        )
        by_name = {fallback.alias: fallback for fallback in found}
        for name in names:
            if name in by_name:
                chain.append(by_name[name])
            else:
                logger.warning(
                    "Fallback alias %s of alias %s is missing or inactive; skipped",
                    name,
                    alias.alias,
                )
    credentials = {
        credential.provider: credential
        for credential in ProviderCredential.objects.filter(
            organization_id=team.organization_id,
            provider__in={entry.provider for entry in chain},
            is_active=True,
        )
    }
    candidates = []
    for entry in chain:
        target = _target_or_none(team, entry, credentials.get(entry.provider))
        if target is not None:
            candidates.append(
                Candidate(
                    alias=entry.alias,
                    target=target,
                    policy=RetryPolicy(
                        max_retries=entry.max_retries,
                        backoff_ms=entry.retry_backoff_ms,
                    ),
                    context=entry,
                )
            )
    if not candidates:
        raise ModelUnavailable()
    return candidates


def _target_or_none(
    team: Team, alias: ModelAlias, credential: ProviderCredential | None
) -> ProviderTarget | None:
    if credential is None:
        logger.error(
            "No active %s credential for organization %s (alias %s)",
            alias.provider,
            team.organization_id,
            alias.alias,
        )
        return None
    try:
        api_key = decrypt_secret(credential.encrypted_api_key)
    except DecryptionFailed:
        logger.error(
            "Credential %s does not decrypt under ENCRYPTION_KEY (alias %s)",
            credential.id,
            alias.alias,
        )
        return None
    return ProviderTarget(
        provider=alias.provider,
        model=alias.provider_model,
        api_key=api_key,
        api_base=credential.api_base,
        api_version=credential.api_version,
        timeout=alias.timeout_seconds or settings.PROVIDER_TIMEOUT_SECONDS,
    )


def provider_target(*, team: Team, alias: ModelAlias) -> ProviderTarget:
    """Build the target for the alias alone, or raise ModelUnavailable (503)."""
    credential = ProviderCredential.objects.filter(
        organization_id=team.organization_id, provider=alias.provider, is_active=True
    ).first()
    target = _target_or_none(team, alias, credential)
    if target is None:
        raise ModelUnavailable()
    return target
