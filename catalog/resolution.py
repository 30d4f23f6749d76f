"""Resolve a team's model alias to the provider target that serves it."""

import logging

from django.conf import settings

from catalog.crypto import DecryptionFailed, decrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.providers import ProviderTarget
from saasllm.errors import ApiError, Forbidden
from teams.models import Team

logger = logging.getLogger(__name__)


class ModelUnavailable(ApiError):
    status_code = 503
    code = "model_unavailable"
    message = "The model is temporarily unavailable. Retry later or contact your administrator."


def resolve_alias(*, team: Team, alias_name: str) -> ModelAlias:
    """Return the active alias if one of the team's active access groups grants it.

    An unknown alias and one the team may not use give the same 403, so a
    team cannot probe the catalog.
    """
    alias = (
        ModelAlias.objects.filter(
            alias=alias_name,
            status=ModelAlias.Status.ACTIVE,
            access_groups__status=AccessGroup.Status.ACTIVE,
            access_groups__teams=team,
        )
        .distinct()
        .first()
    )
    if alias is None:
        raise Forbidden(
            f"The model '{alias_name}' is not available to this team.",
            code="model_not_allowed",
        )
    return alias


def provider_target(*, team: Team, alias: ModelAlias) -> ProviderTarget:
    """Build the target for the alias from the organization's active credential."""
    credential = ProviderCredential.objects.filter(
        organization_id=team.organization_id, provider=alias.provider, is_active=True
    ).first()
    if credential is None:
        logger.error(
            "No active %s credential for organization %s (alias %s)",
            alias.provider,
            team.organization_id,
            alias.alias,
        )
        raise ModelUnavailable()
    try:
        api_key = decrypt_secret(credential.encrypted_api_key)
    except DecryptionFailed:
        logger.error(
            "Credential %s does not decrypt under ENCRYPTION_KEY (alias %s)",
            credential.id,
            alias.alias,
        )
        raise ModelUnavailable() from None
    return ProviderTarget(
        provider=alias.provider,
        model=alias.provider_model,
        api_key=api_key,
        api_base=credential.api_base,
        api_version=credential.api_version,
        timeout=settings.PROVIDER_TIMEOUT_SECONDS,
    )
