"""Queries per call on the call path, and invalidation of the catalog cache.

Counts are taken inside the test's transaction, so each ``transaction.atomic``
block adds a SAVEPOINT and a RELEASE SAVEPOINT to them. A served gateway runs
BEGIN and COMMIT instead, which Django does not count.
"""

import json
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from catalog import cache
from catalog.cache import CachedCredential, bump_catalog_version, clear_catalog_cache
from catalog.models import AccessGroup, CatalogVersion, ModelAlias
from catalog.services import set_provider_credential_active, update_model_alias
from jobs.models import LLMCall
from jobs.tests.conftest import post_json
from saasllm.test_servers import gunicorn_gateway
from teams.services import revoke_key, set_team_access_groups

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report"}]
CALL = {"model": "chat-fast", "messages": MESSAGES}
SINGLE_CALL = {"job_type": "cache", **CALL}
ROTATED_KEY = "sk-provider-rotated-0123456789"

# Queries of one call with a warm catalog cache, job-based team:
# open job: key, job, catalog token, admit (1 UPDATE), then record_call
#   (SAVEPOINT, INSERT call, lock job, UPDATE job, RELEASE) = 9.
# own job: key, catalog token, open_single_call_job (SAVEPOINT, hold, INSERT
#   job, RELEASE), then one transaction records the call and closes the job
#   (SAVEPOINT, lock job, INSERT call, lock team, ledger row, UPDATE team,
#   UPDATE job, RELEASE) = 14.
OPEN_JOB_QUERIES = 9
OWN_JOB_QUERIES = 14
# The catalog pieces a cold cache loads: active aliases, the team's aliases
# and the organization's credentials.
CATALOG_LOAD_QUERIES = 3


@async_to_sync
async def read_stream(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def send(client, path, body, headers):
    """POST ``body`` and read the whole response, streamed or not.

    A stream is read to its end because the call is recorded only then.
    """
    response = post_json(client, path, body, headers)
    if response.streaming:
        assert read_stream(response).endswith(b"data: [DONE]\n\n")
    return response


def open_job(client, team) -> str:
    response = post_json(
        client, "/api/jobs/create", {"job_type": "cache"}, team.headers
    )
    assert response.status_code == 201, response.content
    return response.json()["job_id"]


def call_once(client, team, model="chat-fast"):
    """Make one create-and-call request and return its response."""
    body = {**SINGLE_CALL, "model": model}
    return post_json(client, "/api/jobs/create-and-call", body, team.headers)


def assert_called(response):
    assert response.status_code == 200, response.content


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


# Query counts


ENDPOINTS = [
    ("/api/jobs/{job}/llm-call", CALL, {}, OPEN_JOB_QUERIES),
    ("/api/jobs/{job}/llm-call-stream", CALL, {}, OPEN_JOB_QUERIES),
    ("/v1/chat/completions", CALL, {"HTTP_X_JOB_ID": "{job}"}, OPEN_JOB_QUERIES),
    (
        "/v1/chat/completions",
        {**CALL, "stream": True},
        {"HTTP_X_JOB_ID": "{job}"},
        OPEN_JOB_QUERIES,
    ),
    ("/api/jobs/create-and-call", SINGLE_CALL, {}, OWN_JOB_QUERIES),
    ("/api/jobs/create-and-call-stream", SINGLE_CALL, {}, OWN_JOB_QUERIES),
    ("/v1/chat/completions", CALL, {}, OWN_JOB_QUERIES),
    ("/v1/chat/completions", {**CALL, "stream": True}, {}, OWN_JOB_QUERIES),
]


@pytest.mark.parametrize(("path", "body", "extra_headers", "queries"), ENDPOINTS)
def test_warm_call_query_count(
    client, team, django_assert_num_queries, path, body, extra_headers, queries
):
    job_id = open_job(client, team)
    path = path.format(job=job_id)
    headers = {
        **team.headers,
        **{name: value.format(job=job_id) for name, value in extra_headers.items()},
    }
    assert_called(send(client, path, body, headers))

    with django_assert_num_queries(queries):
        response = send(client, path, body, headers)

    assert_called(response)


def test_fallbacks_add_no_queries(client, team, django_assert_num_queries):
    ModelAlias.objects.create(
        alias="chat-backup", provider="openai_compatible", provider_model="fake-gpt"
    )
    alias = ModelAlias.objects.get(alias="chat-fast")
    alias.fallbacks = ["chat-backup"]
    alias.save(update_fields=["fallbacks"])
    job_id = open_job(client, team)
    path = f"/api/jobs/{job_id}/llm-call"
    assert_called(send(client, path, CALL, team.headers))

    with django_assert_num_queries(OPEN_JOB_QUERIES):
        response = send(client, path, CALL, team.headers)

    assert_called(response)


def test_cold_cache_loads_catalog_once(client, team, django_assert_num_queries):
    job_id = open_job(client, team)
    path = f"/api/jobs/{job_id}/llm-call"
    assert_called(send(client, path, CALL, team.headers))
    clear_catalog_cache()

    with django_assert_num_queries(OPEN_JOB_QUERIES + CATALOG_LOAD_QUERIES):
        cold = send(client, path, CALL, team.headers)
    with django_assert_num_queries(OPEN_JOB_QUERIES):
        warm = send(client, path, CALL, team.headers)

    assert_called(cold)
    assert_called(warm)


@pytest.mark.parametrize(
    ("path", "body", "queries"),
    [
        # The locked admission of a consumption team: SAVEPOINT, lock job,
        # UPDATE job, RELEASE in place of the single UPDATE.
        ("/api/jobs/{job}/llm-call", CALL, OPEN_JOB_QUERIES + 3),
        # The hold for the call's reservation is one more conditional UPDATE.
        ("/api/jobs/create-and-call", SINGLE_CALL, OWN_JOB_QUERIES + 1),
    ],
)
def test_consumption_team_query_count(
    client, team_factory, django_assert_num_queries, path, body, queries
):
    team = team_factory(
        "acme-metered",
        credits=1000,
        budget_mode="consumption_usd",
        credits_per_dollar=Decimal(100000),
    )
    path = path.format(job=open_job(client, team))
    assert_called(send(client, path, body, team.headers))

    with django_assert_num_queries(queries):
        response = send(client, path, body, team.headers)

    assert_called(response)


# Invalidation by the admin API, whose views call catalog.services


@pytest.fixture
def api(client, admin_headers):
    def call(method, path, body=None):
        data = json.dumps(body) if body is not None else None
        response = getattr(client, method)(
            path, data=data, content_type="application/json", **admin_headers
        )
        assert response.status_code in (200, 204), response.content
        return response

    return call


def last_call() -> LLMCall:
    return LLMCall.objects.order_by("-created_at").first()


def test_admin_alias_price_edit_is_seen(client, team, api):
    assert_called(call_once(client, team))

    api("put", "/api/models/chat-fast", {"pricing_input": "9.5"})
    response = call_once(client, team)

    assert_called(response)
    assert last_call().input_price_per_million == Decimal("9.5")


def test_admin_alias_status_edit_is_seen(client, team, api):
    assert_called(call_once(client, team))

    api("put", "/api/models/chat-fast", {"status": "Inactive"})

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_admin_alias_provider_model_edit_is_seen(client, team, api, fake_provider):
    assert_called(call_once(client, team))

    api("put", "/api/models/chat-fast", {"actual_model": "fake-gpt-large"})
    response = call_once(client, team)

    assert_called(response)
    assert fake_provider.requests[-1].body["model"] == "fake-gpt-large"
    assert last_call().provider_model == "fake-gpt-large"


def test_admin_alias_delete_is_seen(client, team, api):
    assert_called(call_once(client, team))

    api("delete", "/api/models/chat-fast")

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_admin_group_alias_removal_is_seen(client, team, api):
    assert_called(call_once(client, team))

    api("put", "/api/model-access-groups/standard/models", {"model_aliases": []})

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_admin_group_alias_addition_is_seen(client, team, api):
    ModelAlias.objects.create(
        alias="chat-new", provider="openai_compatible", provider_model="fake-gpt"
    )
    assert_error(call_once(client, team, "chat-new"), 403, "model_not_allowed")

    api(
        "put",
        "/api/model-access-groups/standard/models",
        {"model_aliases": ["chat-fast", "chat-new"]},
    )

    assert_called(call_once(client, team, "chat-new"))


def test_admin_group_suspension_is_seen(client, team, api):
    assert_called(call_once(client, team))

    api("put", "/api/model-access-groups/standard", {"status": "INACTIVE"})

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_admin_credential_key_change_is_seen(
    client, team, api, credential, fake_provider
):
    assert_called(call_once(client, team))

    api("put", f"/api/provider-credentials/{credential.id}", {"api_key": ROTATED_KEY})
    response = call_once(client, team)

    assert_called(response)
    received = fake_provider.requests[-1].headers["Authorization"]
    assert received == f"Bearer {ROTATED_KEY}"


def test_admin_credential_deactivation_is_seen(client, team, api, credential):
    assert_called(call_once(client, team))

    api("put", f"/api/provider-credentials/{credential.id}/deactivate")

    assert_error(call_once(client, team), 503, "model_unavailable")


def test_admin_credential_delete_is_seen(client, team, api, credential):
    assert_called(call_once(client, team))

    api("delete", f"/api/provider-credentials/{credential.id}")

    assert_error(call_once(client, team), 503, "model_unavailable")


def test_team_group_removal_by_service_is_seen(client, team):
    assert_called(call_once(client, team))

    set_team_access_groups(team_id=team.id, access_groups=[])

    assert_error(call_once(client, team), 403, "model_not_allowed")


# Invalidation by direct ORM saves, which send signals


def test_orm_alias_save_is_seen(client, team):
    assert_called(call_once(client, team))
    alias = ModelAlias.objects.get(alias="chat-fast")

    alias.output_price_per_million = Decimal("4")
    alias.save()
    assert_called(call_once(client, team))
    priced = last_call()
    alias.status = ModelAlias.Status.DEPRECATED
    alias.save()

    assert priced.output_price_per_million == Decimal("4")
    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_orm_alias_delete_is_seen(client, team):
    assert_called(call_once(client, team))

    ModelAlias.objects.get(alias="chat-fast").delete()

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_orm_group_membership_changes_are_seen(client, team, access_group, alias):
    assert_called(call_once(client, team))

    access_group.aliases.remove(alias)
    assert_error(call_once(client, team), 403, "model_not_allowed")
    access_group.aliases.add(alias)

    assert_called(call_once(client, team))


def test_orm_team_membership_changes_are_seen(client, team, access_group):
    assert_called(call_once(client, team))

    team.team.access_groups.remove(access_group)
    assert_error(call_once(client, team), 403, "model_not_allowed")
    access_group.teams.add(team.team)
    assert_called(call_once(client, team))
    team.team.access_groups.clear()

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_orm_group_status_save_is_seen(client, team, access_group):
    assert_called(call_once(client, team))

    access_group.status = AccessGroup.Status.INACTIVE
    access_group.save()

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_orm_credential_save_is_seen(client, team, credential, closed_port):
    assert_called(call_once(client, team))

    credential.api_base = f"http://127.0.0.1:{closed_port}/v1"
    credential.save()

    assert_error(call_once(client, team), 502, "provider_unreachable")


def test_orm_credential_delete_is_seen(client, team, credential):
    assert_called(call_once(client, team))

    credential.delete()

    assert_error(call_once(client, team), 503, "model_unavailable")


# Writes without signals, and what stays uncached


def test_queryset_update_needs_explicit_bump(client, team):
    assert_called(call_once(client, team))

    ModelAlias.objects.filter(alias="chat-fast").update(status="inactive")
    bump_catalog_version()

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_cache_expires_after_max_age(client, team, monkeypatch):
    assert_called(call_once(client, team))
    monkeypatch.setattr(cache, "MAX_AGE_SECONDS", 0.0)

    ModelAlias.objects.filter(alias="chat-fast").update(status="inactive")

    assert_error(call_once(client, team), 403, "model_not_allowed")


def test_missing_version_row_disables_cache(client, team, django_assert_num_queries):
    assert_called(call_once(client, team))
    CatalogVersion.objects.all().delete()

    with django_assert_num_queries(OWN_JOB_QUERIES + CATALOG_LOAD_QUERIES):
        response = call_once(client, team)

    assert_called(response)


def test_key_revocation_is_not_cached(client, team):
    assert_called(call_once(client, team))

    revoke_key(key=team.team.keys.get(), actor=None)

    assert call_once(client, team).status_code == 401


def test_cached_credential_repr_hides_key():
    credential = CachedCredential(
        id=None, api_key=ROTATED_KEY, api_base="", api_version=""
    )

    assert ROTATED_KEY not in repr(credential)


# Across processes: the gateway in gunicorn workers, changes made here


def request(base_url, key, body) -> tuple[int, dict]:
    req = urllib.request.Request(
        base_url + "/api/jobs/create-and-call",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# Enough requests that both workers most likely serve some of them.
REQUESTS_PER_STEP = 8


def statuses(base_url, key) -> list[tuple[int, str | None]]:
    replies = [request(base_url, key, SINGLE_CALL) for _ in range(REQUESTS_PER_STEP)]
    return [(status, body.get("code")) for status, body in replies]


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the server processes need a database they can share with the test",
)
@pytest.mark.django_db(transaction=True)
def test_changes_reach_other_processes(team_factory, alias, credential):
    team = team_factory("acme-served", credits=100)
    allowed = [(200, None)] * REQUESTS_PER_STEP
    with gunicorn_gateway(WEB_CONCURRENCY="2") as base_url:
        assert statuses(base_url, team.key) == allowed

        update_model_alias(
            model_alias=alias, fields={"input_price_per_million": Decimal("7")}
        )
        assert statuses(base_url, team.key) == allowed
        recent = LLMCall.objects.order_by("-created_at")[:REQUESTS_PER_STEP]
        assert {call.input_price_per_million for call in recent} == {Decimal("7")}

        update_model_alias(model_alias=alias, fields={"status": "inactive"})
        assert (
            statuses(base_url, team.key)
            == [(403, "model_not_allowed")] * REQUESTS_PER_STEP
        )

        update_model_alias(model_alias=alias, fields={"status": "active"})
        set_provider_credential_active(credential=credential, is_active=False)
        assert (
            statuses(base_url, team.key)
            == [(503, "model_unavailable")] * REQUESTS_PER_STEP
        )
