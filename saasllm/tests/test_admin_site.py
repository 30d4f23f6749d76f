"""The Django admin: every model opens, secrets stay hidden, actions use services."""

import re
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.crypto import decrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from conftest import make_team
from jobs.models import Job, LLMCall
from saasllm.authentication import authenticate_key
from saasllm.errors import InvalidApiKey
from teams.models import CreditTransaction, Organization, Team, VirtualKey
from teams.services import allocate_credits, create_organization, issue_key

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"
KEY_PATTERN = re.compile(r"sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}")

ALL_MODELS = [
    Organization,
    Team,
    VirtualKey,
    CreditTransaction,
    ModelAlias,
    AccessGroup,
    ProviderCredential,
    Job,
    LLMCall,
]
MODELS_WITH_ADD = {Organization, Team, ModelAlias, AccessGroup, ProviderCredential}


def admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def change_url(obj):
    return admin_url(type(obj), "change", quote(obj.pk))


def form_data(response) -> dict:
    """Return POST data that resubmits the change form of ``response`` as is."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms.append(formset.management_form)
        forms.extend(formset.forms)
    for form in forms:
        for field in form:
            value = field.value()
            if value is None or value is False:
                continue
            data[field.html_name] = "on" if value is True else value
    return data


def create_job(team, calls=1):
    job = Job.objects.create(
        team=team, organization_id=team.organization_id, job_type="summarize"
    )
    for number in range(calls):
        LLMCall.objects.create(
            job=job,
            team=team,
            organization_id=team.organization_id,
            alias="chat-fast",
            provider="openai_compatible",
            provider_model="fake-gpt-small",
            purpose=f"draft-{number}",
            prompt_tokens=100,
            completion_tokens=20,
            total_tokens=120,
            provider_cost_usd=Decimal("0.0000270000"),
            client_cost_usd=Decimal("0.0000270000"),
            latency_ms=40,
        )
    return job


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password="unused-Password-42"
    )
    client.force_login(user)
    return client


@pytest.fixture
def job(team):
    return create_job(team.team, calls=2)


@pytest.fixture
def sample_objects(team, credential, alias, access_group, job):
    """One row of every registered model, keyed by model."""
    return {
        Organization: team.team.organization,
        Team: team.team,
        VirtualKey: team.team.keys.get(),
        CreditTransaction: team.team.transactions.get(),
        ModelAlias: alias,
        AccessGroup: access_group,
        ProviderCredential: credential,
        Job: job,
        LLMCall: job.calls.first(),
    }


def assert_no_secrets(content: str, team, credential):
    assert PROVIDER_SECRET not in content
    assert credential.encrypted_api_key not in content
    assert team.key not in content
    for digest in VirtualKey.objects.values_list("digest", flat=True):
        assert digest not in content


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_changelist_and_change_page_render(
    superuser_client, sample_objects, team, credential, model
):
    obj = sample_objects[model]

    changelist = superuser_client.get(admin_url(model, "changelist"))
    change = superuser_client.get(change_url(obj))

    assert changelist.status_code == 200
    assert change.status_code == 200
    assert_no_secrets(changelist.content.decode(), team, credential)
    assert_no_secrets(change.content.decode(), team, credential)


def test_index_lists_every_model(superuser_client):
    response = superuser_client.get(reverse("admin:index"))

    assert response.status_code == 200
    for model in ALL_MODELS:
        assert admin_url(model, "changelist") in response.content.decode()


def test_autocomplete_finds_organization(superuser_client, organization):
    response = superuser_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "teams",
            "model_name": "team",
            "field_name": "organization",
            "term": "acm",
        },
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == ["acme"]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_add_page_only_where_allowed(superuser_client, model):
    response = superuser_client.get(admin_url(model, "add"))

    assert response.status_code == (200 if model in MODELS_WITH_ADD else 403)


@pytest.mark.parametrize(
    "model", [CreditTransaction, LLMCall], ids=lambda model: model.__name__
)
def test_usage_records_are_read_only(superuser_client, sample_objects, model):
    obj = sample_objects[model]

    change = superuser_client.post(change_url(obj), {})
    delete = superuser_client.post(admin_url(model, "delete", quote(obj.pk)))

    assert change.status_code == 403
    assert delete.status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_team_delete_is_disabled(superuser_client, team):
    response = superuser_client.post(admin_url(Team, "delete", team.id))

    assert response.status_code == 403
    assert Team.objects.filter(pk=team.id).exists()


def test_issue_key_action_shows_key_once(superuser_client, team):
    url = admin_url(Team, "changelist")

    response = superuser_client.post(
        url, {"action": "issue_new_key", "_selected_action": [team.id]}
    )

    assert response.status_code == 200
    content = response.content.decode()
    plaintexts = KEY_PATTERN.findall(content)
    assert len(plaintexts) == 1
    plaintext = plaintexts[0]
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert not any(plaintext in message for message in messages)
    assert "messages" not in response.cookies
    assert "no-store" in response["Cache-Control"]
    key = authenticate_key(f"Bearer {plaintext}")
    assert key.team_id == team.id
    assert key.created_by == "root"
    assert key.digest != plaintext
    assert team.team.keys.count() == 2
    next_page = superuser_client.get(url)
    assert plaintext not in next_page.content.decode()


def test_view_only_staff_cannot_run_actions(client, django_user_model, team):
    user = django_user_model.objects.create_user(
        username="viewer", password="unused-Password-42", is_staff=True
    )
    user.user_permissions.add(Permission.objects.get(codename="view_team"))
    client.force_login(user)

    page = client.get(admin_url(Team, "changelist"))
    response = client.post(
        admin_url(Team, "changelist"),
        {"action": "issue_new_key", "_selected_action": [team.id]},
    )

    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert response.status_code == 200
    assert KEY_PATTERN.search(response.content.decode()) is None
    assert team.team.keys.count() == 1


def test_revoke_action_disables_key(superuser_client, team):
    key = team.team.keys.get()

    response = superuser_client.post(
        admin_url(VirtualKey, "changelist"),
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(InvalidApiKey):
        authenticate_key(f"Bearer {team.key}")


def test_key_change_keeps_concurrent_revocation(superuser_client, team):
    key = team.team.keys.get()
    page = superuser_client.get(change_url(key))
    data = form_data(page)
    VirtualKey.objects.filter(pk=key.pk).update(revoked_at="2030-01-01T00:00:00Z")

    response = superuser_client.post(change_url(key), {**data, "name": "renamed"})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed"
    assert key.revoked_at is not None


def test_add_credits_action_writes_allocation(superuser_client, team):
    url = admin_url(Team, "changelist")
    selection = {"action": "add_credits", "_selected_action": [team.id]}

    form_page = superuser_client.post(url, selection)
    response = superuser_client.post(
        url, {**selection, "apply": "1", "amount": "25", "reason": "Top-up"}
    )

    assert form_page.status_code == 200
    assert "amount" in form_page.context["form"].fields
    assert response.status_code == 302
    entry = CreditTransaction.objects.get(team_id=team.id, reason="Top-up")
    assert entry.type == CreditTransaction.Type.ALLOCATION
    assert entry.amount == 25
    assert entry.balance_before == 10
    assert entry.balance_after == 35
    assert entry.actor == "root"
    assert Team.objects.get(pk=team.id).credits_allocated == 35


@pytest.mark.parametrize("amount", ["0", "-5", "ten"])
def test_add_credits_rejects_invalid_amount(superuser_client, team, amount):
    response = superuser_client.post(
        admin_url(Team, "changelist"),
        {
            "action": "add_credits",
            "_selected_action": [team.id],
            "apply": "1",
            "amount": amount,
            "reason": "Top-up",
        },
    )

    assert response.status_code == 200
    assert "amount" in response.context["form"].errors
    assert team.team.transactions.count() == 1
    assert Team.objects.get(pk=team.id).credits_allocated == 10


def test_team_add_uses_ledger_and_shows_key(
    superuser_client, organization, access_group
):
    response = superuser_client.post(
        admin_url(Team, "add"),
        {
            "id": "acme-sales",
            "organization": organization.pk,
            "name": "",
            "access_groups": [access_group.pk],
            "credits": "40",
            "budget_mode": Team.BudgetMode.JOB_BASED,
            "credits_per_dollar": "10",
            "tokens_per_credit": "10000",
            "metadata": "{}",
        },
    )

    assert response.status_code == 200
    team = Team.objects.get(pk="acme-sales")
    assert team.name == "acme-sales"
    assert team.credits_allocated == 40
    assert list(team.access_groups.all()) == [access_group]
    entry = team.transactions.get()
    assert entry.type == CreditTransaction.Type.ALLOCATION
    assert entry.amount == 40
    assert entry.actor == "root"
    plaintexts = KEY_PATTERN.findall(response.content.decode())
    assert len(plaintexts) == 1
    assert authenticate_key(f"Bearer {plaintexts[0]}").team_id == "acme-sales"


def test_team_change_keeps_concurrent_balance(superuser_client, team):
    page = superuser_client.get(change_url(team.team))
    data = form_data(page)
    allocate_credits(team_id=team.id, amount=5, reason="Meanwhile")

    response = superuser_client.post(
        change_url(team.team), {**data, "name": "Research", "markup_percent": "12.5"}
    )

    assert response.status_code == 302
    saved = Team.objects.get(pk=team.id)
    assert saved.name == "Research"
    assert saved.markup_percent == Decimal("12.50")
    assert saved.credits_allocated == 15
    assert saved.status == Team.Status.ACTIVE


def test_suspend_and_resume_actions(superuser_client, team):
    url = admin_url(Team, "changelist")

    superuser_client.post(
        url, {"action": "suspend_teams", "_selected_action": [team.id]}
    )
    suspended = Team.objects.get(pk=team.id).status
    superuser_client.post(
        url, {"action": "resume_teams", "_selected_action": [team.id]}
    )

    assert suspended == Team.Status.SUSPENDED
    assert Team.objects.get(pk=team.id).status == Team.Status.ACTIVE


def test_credential_add_stores_encrypted_key(superuser_client, organization):
    secret = "sk-ant-new-secret-987654"

    response = superuser_client.post(
        admin_url(ProviderCredential, "add"),
        {
            "organization": organization.pk,
            "provider": "anthropic",
            "name": "anthropic key",
            "api_key": secret,
            "api_base": "",
            "api_version": "",
        },
    )

    assert response.status_code == 302
    credential = ProviderCredential.objects.get(provider="anthropic")
    assert secret not in credential.encrypted_api_key
    assert decrypt_secret(credential.encrypted_api_key) == secret
    assert credential.created_by == "root"
    assert credential.is_active is True
    page = superuser_client.get(change_url(credential)).content.decode()
    assert secret not in page
    assert credential.encrypted_api_key not in page
    assert "•••• (set)" in page


def test_credential_add_requires_key(superuser_client, organization):
    response = superuser_client.post(
        admin_url(ProviderCredential, "add"),
        {"organization": organization.pk, "provider": "anthropic", "name": "no key"},
    )

    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors
    assert not ProviderCredential.objects.filter(name="no key").exists()


def test_credential_add_rejects_second_active(superuser_client, credential):
    response = superuser_client.post(
        admin_url(ProviderCredential, "add"),
        {
            "organization": credential.organization_id,
            "provider": credential.provider,
            "name": "duplicate",
            "api_key": "sk-duplicate-0000",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors.as_data()[0].code == "already_exists"
    assert ProviderCredential.objects.filter(name="duplicate").count() == 0


def test_credential_change_without_key_keeps_it(superuser_client, credential):
    page = superuser_client.get(change_url(credential))
    data = form_data(page)
    ciphertext = credential.encrypted_api_key

    response = superuser_client.post(
        change_url(credential), {**data, "name": "renamed", "api_key": ""}
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.name == "renamed"
    assert credential.encrypted_api_key == ciphertext
    assert credential.updated_by == "root"
    assert 'name="api_key"' in page.content.decode()
    assert 'type="password"' in page.content.decode()


def test_credential_change_with_key_replaces_it(superuser_client, credential):
    data = form_data(superuser_client.get(change_url(credential)))

    response = superuser_client.post(
        change_url(credential), {**data, "api_key": "sk-rotated-secret-1111"}
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert decrypt_secret(credential.encrypted_api_key) == "sk-rotated-secret-1111"
    history = superuser_client.get(
        admin_url(ProviderCredential, "history", quote(credential.pk))
    )
    assert history.status_code == 200
    assert "sk-rotated-secret-1111" not in history.content.decode()
    assert credential.encrypted_api_key not in history.content.decode()


def test_organization_add_and_change(superuser_client):
    response = superuser_client.post(
        admin_url(Organization, "add"),
        {"id": "initech", "name": "Initech", "metadata": '{"tier": "gold"}'},
    )
    organization = Organization.objects.get(pk="initech")
    data = form_data(superuser_client.get(change_url(organization)))
    changed = superuser_client.post(
        change_url(organization), {**data, "status": "suspended"}
    )

    assert response.status_code == 302
    assert changed.status_code == 302
    organization.refresh_from_db()
    assert organization.name == "Initech"
    assert organization.metadata == {"tier": "gold"}
    assert organization.status == Organization.Status.SUSPENDED


def test_model_alias_add_and_change(superuser_client):
    response = superuser_client.post(
        admin_url(ModelAlias, "add"),
        {
            "alias": "chat-smart",
            "display_name": "Chat (smart)",
            "description": "",
            "status": "active",
            "provider": "openai",
            "provider_model": "gpt-4o",
            "input_price_per_million": "2.5",
            "output_price_per_million": "10",
        },
    )
    model_alias = ModelAlias.objects.get(alias="chat-smart")
    data = form_data(superuser_client.get(change_url(model_alias)))
    changed = superuser_client.post(
        change_url(model_alias), {**data, "status": "deprecated"}
    )

    assert response.status_code == 302
    assert changed.status_code == 302
    model_alias.refresh_from_db()
    assert model_alias.provider_model == "gpt-4o"
    assert model_alias.input_price_per_million == Decimal("2.5")
    assert model_alias.status == ModelAlias.Status.DEPRECATED
    assert "alias" not in data


def test_access_group_add_and_change(superuser_client, alias):
    response = superuser_client.post(
        admin_url(AccessGroup, "add"),
        {"name": "premium", "display_name": "", "description": ""},
    )
    group = AccessGroup.objects.get(name="premium")
    data = form_data(superuser_client.get(change_url(group)))
    changed = superuser_client.post(
        change_url(group), {**data, "aliases": [alias.pk], "status": "inactive"}
    )

    assert response.status_code == 302
    assert changed.status_code == 302
    group.refresh_from_db()
    assert list(group.aliases.all()) == [alias]
    assert group.status == AccessGroup.Status.INACTIVE


def test_access_group_in_use_is_not_deleted(superuser_client, team, access_group):
    url = admin_url(AccessGroup, "delete", quote(access_group.pk))

    page = superuser_client.get(url)
    superuser_client.post(url, {"post": "yes"})

    assert page.status_code == 200
    assert f"Team {team.id}" in page.content.decode()
    assert AccessGroup.objects.filter(pk=access_group.pk).exists()


def test_job_change_edits_metadata_only(superuser_client, job):
    data = form_data(superuser_client.get(change_url(job)))
    Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETED)

    response = superuser_client.post(
        change_url(job), {**data, "metadata": '{"ticket": "T-1"}'}
    )

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.metadata == {"ticket": "T-1"}
    assert job.status == Job.Status.COMPLETED


def test_job_page_lists_calls(superuser_client, job):
    response = superuser_client.get(change_url(job))

    content = response.content.decode()
    assert "draft-0" in content
    assert "draft-1" in content
    assert "fake-gpt-small" in content
    assert "2 calls (0 failed), 240 tokens" in content


def search_results(client, model, term) -> list:
    response = client.get(admin_url(model, "changelist"), {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_job_and_call_search(superuser_client, job):
    calls = set(job.calls.all())

    assert search_results(superuser_client, Job, job.team_id) == [job]
    assert search_results(superuser_client, Job, str(job.pk)) == [job]
    assert search_results(superuser_client, Job, "nobody") == []
    assert set(search_results(superuser_client, LLMCall, str(job.pk))) == calls
    assert set(search_results(superuser_client, LLMCall, "chat-fast")) == calls
    assert search_results(superuser_client, LLMCall, "CHAT-FAST") == []


def add_rows(model, count, team, organization):
    """Add ``count`` rows of ``model``, with the related rows its list shows."""
    start = model.objects.count()
    for number in range(start, start + count):
        if model is Organization:
            create_organization(organization_id=f"org-{number}", name="Org")
        elif model is Team:
            make_team(organization, f"team-{number}")
        elif model is VirtualKey:
            issue_key(team=team, name=f"key-{number}")
        elif model is CreditTransaction:
            allocate_credits(team_id=team.pk, amount=1, reason=f"grant {number}")
        elif model is ModelAlias:
            ModelAlias.objects.create(
                alias=f"alias-{number}", provider="openai", provider_model="gpt"
            )
        elif model is AccessGroup:
            AccessGroup.objects.create(name=f"group-{number}").teams.add(team)
        elif model is ProviderCredential:
            ProviderCredential.objects.create(
                organization=organization,
                provider="openai",
                name=f"old key {number}",
                encrypted_api_key="unused",
                is_active=False,
            )
        elif model in (Job, LLMCall):
            create_job(team, calls=1)


def count_queries(client, url) -> int:
    # A first request fills process-wide caches (content types), so only the
    # second one is counted.
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_changelist_queries_do_not_grow(superuser_client, team, model):
    url = admin_url(model, "changelist")
    add_rows(model, 3, team.team, team.team.organization)
    few = count_queries(superuser_client, url)

    add_rows(model, 7, team.team, team.team.organization)
    many = count_queries(superuser_client, url)

    assert model.objects.count() >= 10
    assert many == few


@pytest.mark.parametrize(
    ("model", "rows"),
    [(Team, VirtualKey), (Job, LLMCall)],
    ids=["team-keys", "job-calls"],
)
def test_change_page_queries_do_not_grow(superuser_client, team, model, rows):
    obj = create_job(team.team, calls=1) if model is Job else team.team
    few = count_queries(superuser_client, change_url(obj))

    for _ in range(9):
        if rows is LLMCall:
            LLMCall.objects.create(
                job=obj,
                team=team.team,
                organization_id=team.team.organization_id,
                alias="chat-fast",
                provider="openai_compatible",
                provider_model="fake-gpt-small",
            )
        else:
            issue_key(team=team.team)
    many = count_queries(superuser_client, change_url(obj))

    assert many == few


def test_favicon_served_by_the_app(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/saasllm/favicon.svg"
    assert client.get(response["Location"]).status_code == 200
