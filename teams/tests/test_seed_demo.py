import re
import stat
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from catalog.crypto import decrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from saasllm.authentication import authenticate_key
from teams.models import CreditTransaction, Organization, Team, VirtualKey
from teams.services import create_organization

PROVIDER_URL = "http://127.0.0.1:8100/v1"


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def seed(key_file, *args):
    """Run seed_demo; return its stdout's admin password and team key."""
    stdout = StringIO()
    call_command(
        "seed_demo",
        "--key-file",
        str(key_file),
        *args,
        stdout=stdout,
        stderr=StringIO(),
    )
    output = stdout.getvalue()
    password = re.search(r"password (\S+)", output).group(1)
    key = re.search(r": (sk-\S+)", output).group(1)
    return password, key


@pytest.mark.django_db
def test_seed_creates_demo_tenant(debug_on, tmp_path):
    key_file = tmp_path / "var" / "demo-key"

    password, key = seed(key_file)

    assert Organization.objects.filter(pk="demo").exists()
    team = Team.objects.get(pk="demo-team")
    assert team.organization_id == "demo"
    assert team.credits_allocated == 100
    assert team.credits_remaining == 100
    allocation = CreditTransaction.objects.get(team=team)
    assert allocation.type == CreditTransaction.Type.ALLOCATION
    assert allocation.amount == 100
    assert allocation.balance_after == 100

    alias = ModelAlias.objects.get(alias="chat-fast")
    assert alias.provider == "openai_compatible"
    assert alias.provider_model == "demo-small"
    assert alias.input_price_per_million == Decimal("0.15")
    assert alias.output_price_per_million == Decimal("0.60")
    group = AccessGroup.objects.get(name="standard")
    assert list(group.aliases.all()) == [alias]
    assert list(team.access_groups.all()) == [group]

    credential = ProviderCredential.objects.get(organization_id="demo")
    assert credential.provider == "openai_compatible"
    assert credential.api_base == PROVIDER_URL
    assert credential.is_active is True
    assert decrypt_secret(credential.encrypted_api_key)

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser is True
    assert admin.is_staff is True
    assert admin.check_password(password) is True


@pytest.mark.django_db
def test_seed_writes_usable_key_file(debug_on, tmp_path):
    key_file = tmp_path / "var" / "demo-key"

    _, key = seed(key_file)

    assert key_file.read_text() == key + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    virtual_key = authenticate_key(f"Bearer {key}")
    assert virtual_key.team_id == "demo-team"
    assert virtual_key.name == "demo"
    active_keys = VirtualKey.objects.filter(team_id="demo-team", revoked_at=None)
    assert list(active_keys) == [virtual_key]


@pytest.mark.django_db
def test_seed_rerun_keeps_credits(debug_on, tmp_path):
    key_file = tmp_path / "demo-key"
    seed(key_file)

    seed(key_file)

    team = Team.objects.get(pk="demo-team")
    assert team.credits_allocated == 100
    assert CreditTransaction.objects.filter(team=team).count() == 1
    assert Organization.objects.count() == 1
    assert ModelAlias.objects.count() == 1
    assert AccessGroup.objects.count() == 1
    assert ProviderCredential.objects.count() == 1
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_seed_rerun_replaces_key_and_password(debug_on, tmp_path):
    key_file = tmp_path / "demo-key"
    old_password, old_key = seed(key_file)

    new_password, new_key = seed(key_file)

    assert new_key != old_key
    assert key_file.read_text() == new_key + "\n"
    assert authenticate_key(f"Bearer {new_key}").team_id == "demo-team"
    old_row = VirtualKey.objects.get(name="demo", revoked_at__isnull=False)
    assert old_row.last_four == old_key[-4:]
    assert VirtualKey.objects.filter(name="demo", revoked_at=None).count() == 1
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(new_password) is True
    assert admin.check_password(old_password) is False


@pytest.mark.django_db
def test_seed_rerun_keeps_edited_alias(debug_on, tmp_path):
    seed(tmp_path / "demo-key")
    ModelAlias.objects.filter(alias="chat-fast").update(
        provider="openai", provider_model="gpt-4o-mini"
    )

    seed(tmp_path / "demo-key")

    alias = ModelAlias.objects.get(alias="chat-fast")
    assert alias.provider == "openai"
    assert alias.provider_model == "gpt-4o-mini"


@pytest.mark.django_db
def test_seed_moves_credential_to_provider_url(debug_on, tmp_path):
    seed(tmp_path / "demo-key")

    seed(tmp_path / "demo-key", "--provider-url", "http://127.0.0.1:9100/v1")

    credential = ProviderCredential.objects.get(organization_id="demo")
    assert credential.api_base == "http://127.0.0.1:9100/v1"


@pytest.mark.django_db
def test_seed_rejects_debug_off(settings, tmp_path):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo", "--key-file", str(tmp_path / "demo-key"))

    assert not Team.objects.exists()
    assert not (tmp_path / "demo-key").exists()


@pytest.mark.django_db
def test_seed_rejects_team_of_other_org(debug_on, tmp_path):
    other = create_organization(organization_id="other", name="Other")
    Team.objects.create(id="demo-team", organization=other, name="Taken")

    with pytest.raises(CommandError, match="organization other"):
        call_command(
            "seed_demo", "--key-file", str(tmp_path / "demo-key"), stderr=StringIO()
        )

    assert not Organization.objects.filter(pk="demo").exists()
    assert not VirtualKey.objects.exists()
    assert not (tmp_path / "demo-key").exists()
