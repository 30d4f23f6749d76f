"""Authentication of team virtual keys, the admin key and staff sessions."""

import functools
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import BasePermission

from audit.services import client_address
from saasllm import observability
from saasllm.errors import Forbidden, InvalidAdminKey, InvalidApiKey
from saasllm.rows import ModelColumns
from teams.keys import candidate_digests, looks_like_key
from teams.models import Organization, Team, VirtualKey

logger = logging.getLogger(__name__)

# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


MASTER_KEY_ACTOR = "master-key"


@dataclass(frozen=True)
class AdminPrincipal:
    """The caller of an admin endpoint: the master key or a staff user.

    ``name`` is the actor in audit fields: "master-key" for the key, the
    username for a staff session.
    """

    name: str
    user: Any = None
    ip_address: str | None = None

    @property
    def is_master_key(self) -> bool:
        return self.user is None

    def has_perms(self, permissions: Iterable[str]) -> bool:
        """Return whether the caller has every permission, always true for the key."""
        return self.is_master_key or self.user.has_perms(permissions)


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
    key = find_unrevoked_key(plaintext)
    if key is None or (key.expires_at is not None and key.expires_at <= now):
        raise InvalidApiKey()

    # Before the team check, so that a rejected team still shows in the log.
    observability.annotate(team_id=key.team_id, key_prefix=key.prefix)
    check_team_usable(key.team)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        VirtualKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def find_unrevoked_key(plaintext: str) -> VirtualKey | None:
    """Look a key up by its digest under the current and every previous secret.

    One indexed query covers all the secrets, so a known key, a revoked key
    and a key that never existed cost the same single query. It reads the
    key with its team and organization in hand-written SQL, because every
    request runs it. A key found under a previous secret gets its digest
    rewritten under the current one, so keys move to a new
    KEY_DIGEST_SECRET as they are used.
    """
    current, *previous = candidate_digests(plaintext)
    digests = [current, *previous]
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(unrevoked_key_sql(connection.vendor, len(digests)), digests)
        row = cursor.fetchone()
    if row is None:
        return None

    key = key_with_team(connection, row)
    if not hmac.compare_digest(key.digest, current):
        move_digest_to_current_secret(key, current)
    return key


KEY_COLUMNS = ModelColumns(VirtualKey, "k")
TEAM_COLUMNS = ModelColumns(Team, "t")
ORGANIZATION_COLUMNS = ModelColumns(Organization, "o")


@functools.cache
def unrevoked_key_sql(vendor: str, digest_count: int) -> str:
    """Return the SELECT of an unrevoked key by digest, with its team and organization.

    Digests are unique, and no two keys share a digest under different
    secrets, so the statement matches one key at the most.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    key, team, organization = KEY_COLUMNS, TEAM_COLUMNS, ORGANIZATION_COLUMNS
    placeholders = ", ".join(["%s"] * digest_count)
    return (
        f"SELECT {key.select_list(connection)}, {team.select_list(connection)}, "
        f"{organization.select_list(connection)} "
        f"FROM {key.table(connection)} "
        f"INNER JOIN {team.table(connection)} ON {team.column(connection, 'id')} "
        f"= {key.column(connection, 'team')} "
        f"INNER JOIN {organization.table(connection)} "
        f"ON {organization.column(connection, 'id')} "
        f"= {team.column(connection, 'organization')} "
        f"WHERE {key.column(connection, 'revoked_at')} IS NULL "
        f"AND {key.column(connection, 'digest')} IN ({placeholders}) LIMIT 1"
    )


def key_with_team(connection, row) -> VirtualKey:
    """Return the key of a row of ``unrevoked_key_sql`` with its team and organization."""
    team_start = len(KEY_COLUMNS)
    organization_start = team_start + len(TEAM_COLUMNS)
    key = KEY_COLUMNS.instance(connection, row[:team_start])
    team = TEAM_COLUMNS.instance(connection, row[team_start:organization_start])
    team.organization = ORGANIZATION_COLUMNS.instance(
        connection, row[organization_start:]
    )
    key.team = team
    return key


def move_digest_to_current_secret(key: VirtualKey, digest: str) -> None:
    # The UPDATE matches only the old digest, so when two workers migrate
    # the same key at once the second one changes nothing.
    VirtualKey.objects.filter(pk=key.pk, digest=key.digest).update(digest=digest)
    key.digest = digest
    logger.info("Moved the digest of key %s to the current secret", key.display)


class VirtualKeyAuthentication(BaseAuthentication):
    """DRF authentication: ``request.user`` is the Team, ``request.auth`` the key."""

    def authenticate(self, request):
        key = authenticate_key(request.META.get("HTTP_AUTHORIZATION"))
        return key.team, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class AdminKeyAuthentication(BaseAuthentication):
    """DRF authentication by ``X-Admin-Key``, compared in constant time.

    A request without the header is left to the next authentication class;
    a wrong key is rejected at once.
    """

    def authenticate(self, request):
        supplied = request.META.get("HTTP_X_ADMIN_KEY")
        if supplied is None:
            return None
        if not hmac.compare_digest(supplied.encode(), settings.MASTER_KEY.encode()):
            raise InvalidAdminKey("The X-Admin-Key header is not valid.")
        principal = AdminPrincipal(MASTER_KEY_ACTOR, ip_address=client_address(request))
        return principal, None

    def authenticate_header(self, request):
        return "X-Admin-Key"


class StaffSessionAuthentication(SessionAuthentication):
    """DRF authentication by the Django admin's session, for active staff users.

    Other users count as unauthenticated. As in DRF's SessionAuthentication,
    unsafe methods need the CSRF token, so another site cannot use a staff
    member's browser to change anything.
    """

    def authenticate(self, request):
        user = getattr(request._request, "user", None)
        if user is None or not user.is_active or not user.is_staff:
            return None

        self.enforce_csrf(request)
        principal = AdminPrincipal(
            user.get_username(), user=user, ip_address=client_address(request)
        )
        return principal, None


class IsTeam(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, VirtualKey)


class IsPlatformAdmin(BasePermission):
    """Admit the master key, or a staff user with the view's model permissions.

    Raises 401 ``invalid_admin_key`` without credentials and 403
    ``permission_denied`` for a staff user who lacks a permission. A view
    that names no permissions admits the master key only.
    """

    def has_permission(self, request, view):
        principal = request.user
        if not isinstance(principal, AdminPrincipal):
            raise InvalidAdminKey(
                "This endpoint requires a valid X-Admin-Key header or a signed-in "
                "staff session."
            )
        if principal.is_master_key:
            return True

        permissions = view.get_required_permissions(request.method)
        if not permissions:
            raise Forbidden(
                "This endpoint accepts the X-Admin-Key header only.",
                code="permission_denied",
            )
        if not principal.has_perms(permissions):
            raise Forbidden(
                f"Your account lacks the permission {', '.join(permissions)} "
                "needed for this request. Ask an owner for a role that has it.",
                code="permission_denied",
            )
        return True
