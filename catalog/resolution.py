"""Resolve a team's model alias to the provider target that serves it."""

import logging

from django.conf import settings
from django.db.models import QuerySet

from catalog.cache import CachedCredential, CatalogSnapshot, current_catalog
from catalog.models import AccessGroup, ModelAlias
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


def resolve_alias(
    *, team: Team, alias_name: str, catalog: CatalogSnapshot | None = None
) -> ModelAlias:
    """Return the active alias if one of the team's active access groups grants it.

    An unknown alias and one the team may not use give the same 403, so a
    team cannot probe the catalog. ``catalog`` defaults to the current one,
    which costs a query to check.
    """
    catalog = catalog or current_catalog()
    alias = None
    if alias_name in catalog.team_alias_names(team.id):
        alias = catalog.active_aliases().get(alias_name)
    if alias is None:
        raise Forbidden(
            f"The model '{alias_name}' is not available to this team.",
            code="model_not_allowed",
        )
    return alias


def route_for_alias(
    *, team: Team, alias: ModelAlias, catalog: CatalogSnapshot | None = None
) -> list[Candidate]:
    """Return the candidates that can serve ``alias``: itself, then its fallbacks.

    Fallbacks are the alias's ``fallbacks`` that exist and are active, in
    their order. The team needs no access group for them, because an
    administrator chose them for an alias the team may use. A candidate whose
    organization has no working credential for its provider is left out and
    logged for the operator. Raises ModelUnavailable (503) when none is left.
    ``catalog`` defaults to the current one, which costs a query to check.
    """
    catalog = catalog or current_catalog()
    active = catalog.active_aliases()
    chain = [alias]
    for name in alias.fallbacks or []:
        if name == alias.alias:
            continue
        if name in active:
            chain.append(active[name])
        else:
            logger.warning(
                "Fallback alias %s of alias %s is missing or inactive; skipped",
                name,
                alias.alias,
            )
    credentials = catalog.credentials(team.organization_id)
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
    team: Team, alias: ModelAlias, credential: CachedCredential | None
) -> ProviderTarget | None:
    if credential is None:
        logger.error(
            "No active %s credential for organization %s (alias %s)",
            alias.provider,
            team.organization_id,
            alias.alias,
        )
        return None
    if credential.api_key is None:
        logger.error(
            "Credential %s does not decrypt under ENCRYPTION_KEY (alias %s)",
            credential.id,
            alias.alias,
        )
        return None
    return ProviderTarget(
        provider=alias.provider,
        model=alias.provider_model,
        api_key=credential.api_key,
        api_base=credential.api_base,
        api_version=credential.api_version,
        timeout=alias.timeout_seconds or settings.PROVIDER_TIMEOUT_SECONDS,
    )


def provider_target(*, team: Team, alias: ModelAlias) -> ProviderTarget:
    """Build the target for the alias alone, or raise ModelUnavailable (503)."""
    credential = current_catalog().credentials(team.organization_id).get(alias.provider)
    target = _target_or_none(team, alias, credential)
    if target is None:
        raise ModelUnavailable()
    return target
