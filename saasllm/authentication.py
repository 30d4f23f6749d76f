"""Authentication of team virtual keys and of the admin key."""

import hmac
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from saasllm.errors import Forbidden, InvalidAdminKey, InvalidApiKey
from teams.keys import digest_key, looks_like_key
from teams.models import Organization, Team, VirtualKey

# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class AdminPrincipal:
    """The caller of an admin endpoint, for audit fields."""

    name: str


def parse_bearer(header: str | None) -> str:
    """Return the key of an ``Authorization: Bearer <key>`` header or raise 401."""
    if not header:
        raise InvalidApiKey(
            "Missing Authorization header. Send 'Authorization: Bearer <key>'."
        )
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or not looks_like_key(parts[1]):
        raise InvalidApiKey(
            "Malformed Authorization header. Send 'Authorization: Bearer <key>'."
        )
    return parts[1]


def check_team_usable(team: Team) -> None:
    """Raise 403 unless the team and its organization are active."""
    if team.organization.status == Organization.Status.SUSPENDED:
        raise Forbidden(
            "This team's organization is suspended. Contact your administrator.",
            code="organization_suspended",
        )
    if team.status == Team.Status.SUSPENDED:
        raise Forbidden(
            "This team is suspended. Contact your administrator.", code="team_suspended"
        )
    if team.status == Team.Status.PAUSED:
        raise Forbidden(
            "This team is paused. Contact your administrator.", code="team_paused"
        )


def authenticate_key(header: str | None) -> VirtualKey:
    """Resolve an Authorization header to a usable key with its team loaded.

    Raises InvalidApiKey (401) for a missing, malformed, unknown, revoked or
    expired key, and Forbidden (403) when the team cannot be used. Validity
    is read from the database on every request, never cached, so revocation
    takes effect at once on every worker.
    """
    plaintext = parse_bearer(header)
    now = timezone.now()
    key = (
        VirtualKey.objects.select_related("team__organization")
        .filter(digest=digest_key(plaintext), revoked_at__isnull=True)
        .first()
    )
    if key is None or (key.expires_at is not None and key.expires_at <= now):
        raise InvalidApiKey()

    check_team_usable(key.team)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        VirtualKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


class VirtualKeyAuthentication(BaseAuthentication):
    """DRF authentication: ``request.user`` is the Team, ``request.auth`` the key."""

    def authenticate(self, request):
        key = authenticate_key(request.META.get("HTTP_AUTHORIZATION"))
        return key.team, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class AdminKeyAuthentication(BaseAuthentication):
    """DRF authentication by ``X-Admin-Key``, compared in constant time."""

    def authenticate(self, request):
        supplied = request.META.get("HTTP_X_ADMIN_KEY")
        if supplied is None:
            raise InvalidAdminKey()
        if not hmac.compare_digest(supplied.encode(), settings.MASTER_KEY.encode()):
            raise InvalidAdminKey("The X-Admin-Key header is not valid.")
        return AdminPrincipal("master-key"), None

    def authenticate_header(self, request):
        return "X-Admin-Key"


class IsTeam(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, VirtualKey)


class IsPlatformAdmin(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.user, AdminPrincipal)
