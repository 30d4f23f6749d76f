"""Each admin list page runs the same number of queries for 3 rows as for 30."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEntry
from audit.services import record
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from conftest import make_team
from jobs.models import Job, LLMCall
from saasllm.tests.admin_data import admin_url, create_job
from teams.models import CreditTransaction, Organization, Team, VirtualKey
from teams.services import allocate_credits, create_organization, issue_key

# Queries of each list page, session and user included. The large tables
# (ledger, jobs, calls, audit log) page without counting their rows.
LIST_QUERIES = {
    Organization: 5,
    Team: 8,
    VirtualKey: 5,
    CreditTransaction: 3,
    ModelAlias: 7,
    AccessGroup: 5,
    ProviderCredential: 6,
    Job: 3,
    LLMCall: 3,
    AuditEntry: 5,
    User: 6,
    Group: 5,
}
# The dashboard, the pricing page and an organization's analytics page.
PAGE_QUERIES = {"dashboard": 7, "pricing": 3, "analytics": 10}


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )
    client.force_login(user)
    return client


def add_rows(model, count, team, organization):
    """Add ``count`` rows of ``model``, with the related rows its list shows."""
    start = model.objects.count()
    for number in range(start, start + count):
        if model is Organization:
            create_organization(organization_id=f"org-{number}", name="Org")
        elif model is Team:
            make_team(organization, f"team-{number}", team.access_groups.all())
        elif model is VirtualKey:
            issue_key(team=team, name=f"key-{number}")
        elif model is CreditTransaction:
            allocate_credits(team_id=team.pk, amount=1, reason=f"grant {number}")
        elif model is ModelAlias:
            alias = ModelAlias.objects.create(
                alias=f"alias-{number}", provider="openai", provider_model="gpt-4o"
            )
            alias.access_groups.set(team.access_groups.all())
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
        elif model is AuditEntry:
            record(actor="alice", action="team.update", obj=team)
        elif model is User:
            User.objects.create_user(username=f"staff-{number}", is_staff=True)
        elif model is Group:
            Group.objects.create(name=f"role-{number}")


def get_page(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return response


@pytest.mark.parametrize("model", list(LIST_QUERIES), ids=lambda model: model.__name__)
def test_list_queries_are_fixed(
    superuser_client, team, django_assert_num_queries, model
):
    url = admin_url(model, "changelist")
    add_rows(model, 3, team.team, team.team.organization)
    # The first request fills process-wide caches, such as content types.
    get_page(superuser_client, url)
    with django_assert_num_queries(LIST_QUERIES[model]):
        few = get_page(superuser_client, url)

    add_rows(model, 27, team.team, team.team.organization)
    with django_assert_num_queries(LIST_QUERIES[model]):
        many = get_page(superuser_client, url)

    assert len(few.context["cl"].result_list) >= 3
    assert len(many.context["cl"].result_list) >= 30


def page_urls(team) -> dict:
    return {
        "dashboard": reverse("admin:index"),
        "pricing": reverse("admin:catalog_modelalias_pricing"),
        "analytics": reverse(
            "admin:teams_organization_analytics_page",
            args=[team.team.organization_id],
        ),
    }


@pytest.mark.parametrize("page", list(PAGE_QUERIES))
def test_report_page_queries_are_fixed(
    superuser_client, team, django_assert_num_queries, page
):
    url = page_urls(team)[page]
    for model in (Team, Job, ModelAlias):
        add_rows(model, 3, team.team, team.team.organization)
    get_page(superuser_client, url)
    with django_assert_num_queries(PAGE_QUERIES[page]):
        get_page(superuser_client, url)

    for model in (Team, Job, ModelAlias):
        add_rows(model, 27, team.team, team.team.organization)
    with django_assert_num_queries(PAGE_QUERIES[page]):
        get_page(superuser_client, url)


def test_large_lists_run_no_count(superuser_client, team):
    add_rows(Job, 3, team.team, team.team.organization)
    add_rows(AuditEntry, 3, team.team, team.team.organization)

    for model in (Job, LLMCall, CreditTransaction, AuditEntry):
        with CaptureQueriesContext(connection) as queries:
            get_page(superuser_client, admin_url(model, "changelist"))

        statements = [query["sql"].upper() for query in queries.captured_queries]
        assert not any("COUNT(" in sql for sql in statements), model
