"""Test kit shared by every app: environment, network guard, tenants.

Tests talk to a real fake provider over HTTP on 127.0.0.1; a socket to any
other host fails the test that opened it.
"""

import ipaddress
import os
import socket

import pytest

MASTER_KEY = os.environ["MASTER_KEY"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if not isinstance(address, tuple):
        return True  # Unix domain sockets
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class OutsideNetworkAccess(RuntimeError):
    pass


def _guarded_connect(self, address):
    if not _is_local(address):
        raise OutsideNetworkAccess(
            f"Test opened a socket to {address!r}; only loopback is allowed."
        )
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise OutsideNetworkAccess(
            f"Test opened a socket to {address!r}; only loopback is allowed."
        )
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


# --- Log leak scan -----------------------------------------------------------
# saasllm.log_scan captures every log line of the session, gunicorn servers'
# included, and fails the run when one contains a virtual key, a provider
# key, a prompt or a server secret. The provider keys of the fixtures below
# start with log_scan.PROVIDER_KEY_MARKER ("sk-provider-"), which the scan
# looks for even in keys that were never saved or sent.
pytest_plugins = ["saasllm.log_scan"]
# --- End of log leak scan ----------------------------------------------------


@pytest.fixture(scope="session")
def fake_provider():
    """A fake OpenAI-compatible and Anthropic provider on 127.0.0.1."""
    from saasllm.fake_provider import FakeProviderServer

    server = FakeProviderServer()
    server.start()
    yield server
    server.stop()


def assert_ledgers_match_balances():
    """Run ``check_ledger``: every team's ledger sums to its balance, holds match."""
    from io import StringIO

    from django.core.management import call_command

    call_command("check_ledger", stdout=StringIO(), stderr=StringIO())


# Set once a test has built tenants, so the suite's final ledger check runs
# only when some test used the database.
tenants_built = False


@pytest.fixture(scope="session", autouse=True)
def ledger_checked_after_suite(django_db_setup, django_db_blocker):
    """Run ``check_ledger`` once more on what the whole suite left behind."""
    yield
    if tenants_built:
        with django_db_blocker.unblock():
            assert_ledgers_match_balances()


def forget_audit_entries(object_type, object_id):
    """Delete a fixture's audit entries, so a test's log holds only its changes."""
    from audit.models import AuditEntry

    AuditEntry.objects.filter(object_type=object_type, object_id=object_id).delete()


@pytest.fixture
def organization(db):
    """Acme; after the test, every team's ledger must sum to its balance."""
    from teams.services import create_organization

    global tenants_built
    tenants_built = True
    organization = create_organization(organization_id="acme", name="Acme Inc.")
    forget_audit_entries("organization", organization.id)
    yield organization
    assert_ledgers_match_balances()


@pytest.fixture
def credential(organization, fake_provider):
    from catalog.crypto import encrypt_secret
    from catalog.models import ProviderCredential

    return ProviderCredential.objects.create(
        organization=organization,
        provider="openai_compatible",
        name="fake provider",
        encrypted_api_key=encrypt_secret("sk-provider-secret-abcdef123456"),
        api_base=fake_provider.openai_base_url,
    )


@pytest.fixture
def alias(db):
    from catalog.models import ModelAlias

    return ModelAlias.objects.create(
        alias="chat-fast",
        display_name="Chat (fast)",
        provider="openai_compatible",
        provider_model="fake-gpt-small",
        input_price_per_million="0.150000",
        output_price_per_million="0.600000",
        # Tests of retries set their own; elsewhere a failure is final.
        max_retries=0,
    )


@pytest.fixture
def access_group(alias):
    from catalog.models import AccessGroup

    group = AccessGroup.objects.create(name="standard", display_name="Standard")
    group.aliases.add(alias)
    return group


class TeamFixture:
    """A team with its plaintext key and ready-made auth headers."""

    def __init__(self, team, key):
        self.team = team
        self.key = key
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    @property
    def id(self):
        return self.team.id


def make_team(organization, team_id, access_groups=(), credits=10, **fields):
    from teams.services import create_team

    team, _, plaintext = create_team(
        organization=organization,
        team_id=team_id,
        access_groups=access_groups,
        credits=credits,
        **fields,
    )
    forget_audit_entries("team", team.id)
    return TeamFixture(team, plaintext)


@pytest.fixture
def team(organization, access_group, credential):
    """A team of Acme with 10 credits and access to ``chat-fast``."""
    return make_team(organization, "acme-research", [access_group])


@pytest.fixture
def team_factory(organization, access_group, credential):
    """Build more Acme teams: ``team_factory("id", credits=0, budget_mode=...)``."""

    def build(team_id, credits=10, **fields):
        return make_team(organization, team_id, [access_group], credits, **fields)

    return build


@pytest.fixture
def outsider(db, access_group, fake_provider):
    """A team of another organization, for cross-tenant tests."""
    from catalog.crypto import encrypt_secret
    from catalog.models import ProviderCredential
    from teams.services import create_organization

    other = create_organization(organization_id="globex", name="Globex")
    forget_audit_entries("organization", other.id)
    ProviderCredential.objects.create(
        organization=other,
        provider="openai_compatible",
        name="fake provider",
        encrypted_api_key=encrypt_secret("sk-provider-secret-globex"),
        api_base=fake_provider.openai_base_url,
    )
    return make_team(other, "globex-ops", [access_group])


@pytest.fixture
def admin_headers():
    return {"HTTP_X_ADMIN_KEY": MASTER_KEY}
