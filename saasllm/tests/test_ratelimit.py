"""Per-team rate limits on the Redis and the database backends."""

import json
import logging
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connection
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

if not apps.is_installed("ratelimits"):
    pytest.skip(
        "the database backend needs 'ratelimits' in INSTALLED_APPS",
        allow_module_level=True,
    )

from catalog.models import ModelAlias
from jobs.models import Job
from ratelimits.models import CallSlot, RateLimitCounter
from saasllm.authentication import IsTeam, VirtualKeyAuthentication
from saasllm.ratelimit import (
    RateLimited,
    RateLimiterUnavailable,
    RateLimitState,
    SlotLease,
    TeamRateLimitMixin,
    acquire_call_slot,
    check_request,
    check_tokens,
    record_tokens,
    release_call_slot,
)
from saasllm.ratelimit.limits import RepeatedWarning, unavailable_warning
from teams.models import Team
from teams.services import create_team

REDIS_URL = "redis://127.0.0.1:6379/0"
# 45 seconds into a minute, so 15 seconds remain in the window.
FROZEN_AT = datetime(2026, 12, 5, 9, 0, 45, tzinfo=UTC)
WINDOW_STARTED_AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
NEXT_WINDOW_AT = datetime(2026, 12, 5, 9, 1, tzinfo=UTC)
# A slot lives for the provider timeout plus a 30-second margin.
SLOT_TTL = timedelta(seconds=60 + 30)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_prefix(settings):
    """Point the limiter at the local Redis under a key prefix of its own."""
    prefix = f"test-ratelimit-{uuid.uuid4().hex}:"
    settings.REDIS_URL = REDIS_URL
    settings.RATE_LIMIT_KEY_PREFIX = prefix
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["redis", "database"])
def backend(request, settings):
    """Run the test once on each backend."""
    settings.PROVIDER_TIMEOUT_SECONDS = 60.0
    if request.param == "redis":
        request.getfixturevalue("redis_prefix")
    else:
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture
def unreachable_redis(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    settings.RATE_LIMIT_KEY_PREFIX = "test-ratelimit-unreachable:"
    unavailable_warning.reset()
    yield
    unavailable_warning.reset()


@pytest.fixture
def limited_team(organization):
    """Build a team of Acme with the given limits: ``limited_team(requests_per_minute=3)``."""

    def build(team_id="acme-limited", **limits):
        team, _, _ = create_team(organization=organization, team_id=team_id)
        Team.objects.filter(pk=team.pk).update(**limits)
        team.refresh_from_db()
        return team

    return build


@pytest.fixture
def frozen_clock():
    with time_machine.travel(FROZEN_AT, tick=False) as traveller:
        yield traveller


def rejection(function, *args) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        function(*args)
    return caught.value


# Requests per minute


def test_requests_within_limit_return_state(backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=3)

    states = [check_request(team) for _ in range(3)]

    assert states == [
        RateLimitState(limit=3, remaining=2, reset_after=15),
        RateLimitState(limit=3, remaining=1, reset_after=15),
        RateLimitState(limit=3, remaining=0, reset_after=15),
    ]
    assert states[0].headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "15",
    }


def test_request_over_limit_raises_429(backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=2)
    check_request(team)
    check_request(team)

    error = rejection(check_request, team)

    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.retry_after == 15
    assert error.state == RateLimitState(limit=2, remaining=0, reset_after=15)
    assert error.message == (
        "The team's limit of 2 requests per minute is reached. Retry after 15 seconds."
    )


def test_rejected_requests_not_counted(backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=2)
    for _ in range(2):
        check_request(team)
    for _ in range(5):
        rejection(check_request, team)

    frozen_clock.move_to(NEXT_WINDOW_AT)
    state = check_request(team)

    assert state == RateLimitState(limit=2, remaining=1, reset_after=60)


def test_request_window_rolls_over(backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=2)
    frozen_clock.move_to(NEXT_WINDOW_AT - timedelta(seconds=1))
    check_request(team)
    check_request(team)
    last_second_error = rejection(check_request, team)

    frozen_clock.move_to(NEXT_WINDOW_AT)
    state = check_request(team)

    assert last_second_error.retry_after == 1
    assert state == RateLimitState(limit=2, remaining=1, reset_after=60)


def test_request_limits_are_per_team(backend, limited_team, frozen_clock):
    first = limited_team("acme-first", requests_per_minute=1)
    second = limited_team("acme-second", requests_per_minute=1)
    check_request(first)

    state = check_request(second)

    assert state.remaining == 0
    assert rejection(check_request, first).code == "rate_limit_exceeded"


def test_lowered_limit_applies_at_once(backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=10)
    for _ in range(3):
        check_request(team)

    team.requests_per_minute = 3
    error = rejection(check_request, team)

    assert error.state == RateLimitState(limit=3, remaining=0, reset_after=15)


def test_zero_requests_per_minute_rejects_all(
    backend, limited_team, frozen_clock, django_assert_num_queries
):
    team = limited_team(requests_per_minute=0)

    with django_assert_num_queries(0):
        error = rejection(check_request, team)

    assert error.code == "rate_limit_exceeded"
    assert error.state == RateLimitState(limit=0, remaining=0, reset_after=15)


# Tokens per minute


def test_tokens_below_limit_pass(backend, limited_team, frozen_clock):
    team = limited_team(tokens_per_minute=1000)
    record_tokens(team, 600)
    record_tokens(team, 399)

    check_tokens(team)


def test_spent_tokens_raise_429(backend, limited_team, frozen_clock):
    team = limited_team(tokens_per_minute=1000)
    record_tokens(team, 600)
    record_tokens(team, 400)

    error = rejection(check_tokens, team)

    assert error.status_code == 429
    assert error.code == "token_limit_exceeded"
    assert error.retry_after == 15
    assert error.state == RateLimitState(limit=1000, remaining=0, reset_after=15)


def test_tokens_reset_in_next_window(backend, limited_team, frozen_clock):
    team = limited_team(tokens_per_minute=1000)
    record_tokens(team, 5000)

    frozen_clock.move_to(NEXT_WINDOW_AT)
    check_tokens(team)
    record_tokens(team, 1000)

    assert rejection(check_tokens, team).code == "token_limit_exceeded"


def test_tokens_are_per_team(backend, limited_team, frozen_clock):
    spender = limited_team("acme-spender", tokens_per_minute=100)
    other = limited_team("acme-other", tokens_per_minute=100)

    record_tokens(spender, 100)

    check_tokens(other)
    assert rejection(check_tokens, spender).code == "token_limit_exceeded"


# Concurrent calls


def test_slots_up_to_limit(backend, limited_team, frozen_clock):
    team = limited_team(max_concurrent_calls=2)

    leases = [acquire_call_slot(team), acquire_call_slot(team)]
    error = rejection(acquire_call_slot, team)

    assert all(lease is not None for lease in leases)
    assert leases[0].lease_id != leases[1].lease_id
    assert error.status_code == 429
    assert error.code == "concurrency_limit_exceeded"
    assert error.retry_after == 1
    assert error.state == RateLimitState(limit=2, remaining=0, reset_after=1)


def test_released_slot_is_reusable(backend, limited_team, frozen_clock):
    team = limited_team(max_concurrent_calls=1)
    lease = acquire_call_slot(team)

    release_call_slot(lease)
    release_call_slot(lease)
    again = acquire_call_slot(team)

    assert again is not None
    assert rejection(acquire_call_slot, team).code == "concurrency_limit_exceeded"


def test_slot_expires_after_ttl(backend, limited_team, frozen_clock):
    team = limited_team(max_concurrent_calls=1)
    lease = acquire_call_slot(team)

    frozen_clock.move_to(FROZEN_AT + SLOT_TTL - timedelta(seconds=1))
    still_held = rejection(acquire_call_slot, team)
    frozen_clock.move_to(FROZEN_AT + SLOT_TTL)
    replacement = acquire_call_slot(team)

    assert lease.expires_at == (FROZEN_AT + SLOT_TTL).timestamp()
    assert still_held.code == "concurrency_limit_exceeded"
    assert replacement is not None


def test_slot_ttl_follows_provider_timeout(
    backend, limited_team, frozen_clock, settings
):
    settings.PROVIDER_TIMEOUT_SECONDS = 120.5
    team = limited_team(max_concurrent_calls=1)

    lease = acquire_call_slot(team)

    assert lease.expires_at == FROZEN_AT.timestamp() + 121 + 30


def test_slots_are_per_team(backend, limited_team, frozen_clock):
    busy = limited_team("acme-busy", max_concurrent_calls=1)
    idle = limited_team("acme-idle", max_concurrent_calls=1)
    acquire_call_slot(busy)

    assert acquire_call_slot(idle) is not None


def test_zero_concurrent_calls_rejects_all(
    backend, limited_team, frozen_clock, django_assert_num_queries
):
    team = limited_team(max_concurrent_calls=0)

    with django_assert_num_queries(0):
        error = rejection(acquire_call_slot, team)

    assert error.code == "concurrency_limit_exceeded"


# Teams without limits


def test_unlimited_team_makes_no_round_trip(
    limited_team, unreachable_redis, settings, django_assert_num_queries
):
    team = limited_team()
    settings.RATE_LIMIT_FAILURE_MODE = "closed"

    for redis_url in (settings.REDIS_URL, ""):
        settings.REDIS_URL = redis_url
        with django_assert_num_queries(0):
            state = check_request(team)
            check_tokens(team)
            record_tokens(team, 500)
            lease = acquire_call_slot(team)
            release_call_slot(lease)

        assert state is None
        assert lease is None


def test_only_set_limits_make_round_trips(limited_team, unreachable_redis, settings):
    team = limited_team(requests_per_minute=10)
    settings.RATE_LIMIT_FAILURE_MODE = "closed"

    check_tokens(team)
    record_tokens(team, 500)
    assert acquire_call_slot(team) is None
    with pytest.raises(RateLimiterUnavailable):
        check_request(team)


# Database backend rows


@pytest.fixture
def database_backend(settings):
    settings.REDIS_URL = ""
    settings.PROVIDER_TIMEOUT_SECONDS = 60.0


def counter_rows():
    return list(
        RateLimitCounter.objects.order_by("kind", "window_started_at").values_list(
            "team_id", "kind", "window_started_at", "used_count"
        )
    )


def test_database_counts_in_window_rows(database_backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=5, tokens_per_minute=1000)

    check_request(team)
    check_request(team)
    record_tokens(team, 120)
    record_tokens(team, 30)

    assert counter_rows() == [
        ("acme-limited", "requests", WINDOW_STARTED_AT, 2),
        ("acme-limited", "tokens", WINDOW_STARTED_AT, 150),
    ]


def test_database_deletes_old_windows(database_backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=5, tokens_per_minute=1000)
    check_request(team)
    record_tokens(team, 10)

    frozen_clock.move_to(NEXT_WINDOW_AT + timedelta(minutes=2))
    check_request(team)
    record_tokens(team, 20)

    later_window = NEXT_WINDOW_AT + timedelta(minutes=2)
    assert counter_rows() == [
        ("acme-limited", "requests", later_window, 1),
        ("acme-limited", "tokens", later_window, 20),
    ]


def test_database_slot_rows(database_backend, limited_team, frozen_clock):
    team = limited_team(max_concurrent_calls=3)

    lease = acquire_call_slot(team)
    slot = CallSlot.objects.get()
    release_call_slot(lease)

    assert str(slot.id) == lease.lease_id
    assert slot.team_id == "acme-limited"
    assert slot.acquired_at == FROZEN_AT
    assert slot.expires_at == FROZEN_AT + SLOT_TTL
    assert not CallSlot.objects.exists()


def test_database_deletes_expired_slots(database_backend, limited_team, frozen_clock):
    team = limited_team(max_concurrent_calls=3)
    acquire_call_slot(team)
    acquire_call_slot(team)

    frozen_clock.move_to(FROZEN_AT + SLOT_TTL)
    lease = acquire_call_slot(team)

    assert list(CallSlot.objects.values_list("id", flat=True)) == [
        uuid.UUID(lease.lease_id)
    ]


def test_team_deletion_deletes_rows(database_backend, limited_team, frozen_clock):
    team = limited_team(requests_per_minute=5, max_concurrent_calls=1)
    check_request(team)
    acquire_call_slot(team)

    Team.objects.filter(pk=team.pk).delete()

    assert not RateLimitCounter.objects.exists()
    assert not CallSlot.objects.exists()


# Redis keys


def test_redis_keys_expire(redis_prefix, limited_team, frozen_clock):
    team = limited_team(
        requests_per_minute=5, tokens_per_minute=100, max_concurrent_calls=1
    )
    window = int(WINDOW_STARTED_AT.timestamp())
    client = redis.Redis.from_url(REDIS_URL)

    check_request(team)
    record_tokens(team, 40)
    lease = acquire_call_slot(team)

    requests_key = f"{redis_prefix}acme-limited:requests:{window}"
    tokens_key = f"{redis_prefix}acme-limited:tokens:{window}"
    slots_key = f"{redis_prefix}acme-limited:slots"
    assert client.get(requests_key) == b"1"
    assert client.get(tokens_key) == b"40"
    assert client.zscore(slots_key, lease.lease_id) == lease.expires_at
    assert 0 < client.ttl(requests_key) <= 120
    assert 0 < client.ttl(tokens_key) <= 120
    assert 0 < client.ttl(slots_key) <= 90
    client.close()


# Redis unreachable


def test_fail_closed_rejects_with_503(limited_team, unreachable_redis, settings):
    settings.RATE_LIMIT_FAILURE_MODE = "closed"
    team = limited_team(
        requests_per_minute=5, tokens_per_minute=100, max_concurrent_calls=1
    )

    for check in (check_request, check_tokens, acquire_call_slot):
        with pytest.raises(RateLimiterUnavailable) as caught:
            check(team)

        assert caught.value.status_code == 503
        assert caught.value.code == "rate_limiter_unavailable"


def test_closed_is_the_default_mode(limited_team, unreachable_redis, settings):
    del settings.RATE_LIMIT_FAILURE_MODE
    team = limited_team(requests_per_minute=5)

    with pytest.raises(RateLimiterUnavailable):
        check_request(team)


def test_fail_open_lets_requests_through(limited_team, unreachable_redis, settings):
    settings.RATE_LIMIT_FAILURE_MODE = "open"
    team = limited_team(
        requests_per_minute=1, tokens_per_minute=1, max_concurrent_calls=1
    )

    states = [check_request(team) for _ in range(3)]
    check_tokens(team)
    leases = [acquire_call_slot(team) for _ in range(3)]

    assert states == [None, None, None]
    assert leases == [None, None, None]


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_unreachable_recording_never_raises(
    limited_team, unreachable_redis, settings, mode
):
    settings.RATE_LIMIT_FAILURE_MODE = mode
    team = limited_team(tokens_per_minute=100, max_concurrent_calls=1)
    lease = SlotLease(team_id=team.id, lease_id=str(uuid.uuid4()), expires_at=0.0)

    record_tokens(team, 50)
    release_call_slot(lease)


def test_unreachable_release_slot_expires(
    redis_prefix, limited_team, frozen_clock, settings, caplog
):
    team = limited_team(max_concurrent_calls=1)
    lease = acquire_call_slot(team)
    unavailable_warning.reset()

    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    with caplog.at_level(logging.WARNING, logger="saasllm.ratelimit.limits"):
        release_call_slot(lease)
    settings.REDIS_URL = REDIS_URL
    frozen_clock.move_to(FROZEN_AT + SLOT_TTL)
    replacement = acquire_call_slot(team)

    assert replacement is not None
    assert "call slot of team acme-limited left to expire" in caplog.text
    unavailable_warning.reset()


@pytest.mark.django_db(transaction=True)
def test_database_error_on_release_is_logged(
    database_backend, limited_team, frozen_clock, caplog
):
    team = limited_team(max_concurrent_calls=1)
    lease = acquire_call_slot(team)
    unavailable_warning.reset()

    def lose_connection(execute, sql, params, many, context):
        if sql.startswith("DELETE") and "ratelimits_callslot" in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with (
        connection.execute_wrapper(lose_connection),
        caplog.at_level(logging.WARNING, logger="saasllm.ratelimit.limits"),
    ):
        release_call_slot(lease)

    assert "call slot of team acme-limited left to expire" in caplog.text
    assert CallSlot.objects.filter(pk=lease.lease_id).exists()
    unavailable_warning.reset()


def test_unreachable_warning_logged_once(
    limited_team, unreachable_redis, settings, caplog
):
    settings.RATE_LIMIT_FAILURE_MODE = "open"
    team = limited_team(requests_per_minute=5)

    with caplog.at_level(logging.WARNING, logger="saasllm.ratelimit.limits"):
        for _ in range(20):
            check_request(team)

    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name == "saasllm.ratelimit.limits"
    ]
    assert len(messages) == 1
    assert messages[0].startswith(
        "Rate limiter unavailable, letting team requests through unlimited "
        "(RATE_LIMIT_FAILURE_MODE is open): Error 111 connecting to 127.0.0.1:"
    )


def test_repeated_warning_counts_skipped(caplog):
    warning = RepeatedWarning(interval_seconds=0.05)

    with caplog.at_level(logging.WARNING, logger="saasllm.ratelimit.limits"):
        for attempt in range(3):
            warning.warn("Redis is down, attempt %s", attempt)
        time.sleep(0.06)
        warning.warn("Redis is down, attempt %s", 3)

    assert [record.getMessage() for record in caplog.records] == [
        "Redis is down, attempt 0",
        "Redis is down, attempt 3 (2 similar warnings skipped since the last one)",
    ]


def test_invalid_failure_mode_raises(limited_team, unreachable_redis, settings):
    settings.RATE_LIMIT_FAILURE_MODE = "sometimes"
    team = limited_team(requests_per_minute=5)

    with pytest.raises(ImproperlyConfigured) as caught:
        check_request(team)

    assert str(caught.value) == (
        "RATE_LIMIT_FAILURE_MODE must be 'closed' or 'open', got 'sometimes'."
    )


# Views


class LimitedView(TeamRateLimitMixin, APIView):
    authentication_classes = [VirtualKeyAuthentication]
    permission_classes = [IsTeam]

    def get(self, request):
        return Response({"team_id": request.user.id})


def get_limited_view(key: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    request = APIRequestFactory().get("/limited", **headers)
    response = LimitedView.as_view()(request)
    response.render()
    return response


@pytest.fixture
def limited_key(organization, database_backend):
    team, _, plaintext = create_team(organization=organization, team_id="acme-view")
    Team.objects.filter(pk=team.pk).update(requests_per_minute=2)
    return plaintext


def test_view_adds_headers_when_allowed(limited_key, frozen_clock):
    response = get_limited_view(limited_key)

    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == "2"
    assert response["X-RateLimit-Remaining"] == "1"
    assert response["X-RateLimit-Reset"] == "15"
    assert "Retry-After" not in response


def test_view_returns_429_with_headers(limited_key, frozen_clock):
    get_limited_view(limited_key)
    get_limited_view(limited_key)

    response = get_limited_view(limited_key)

    assert response.status_code == 429
    assert response.data == {
        "detail": (
            "The team's limit of 2 requests per minute is reached. "
            "Retry after 15 seconds."
        ),
        "code": "rate_limit_exceeded",
    }
    assert response["Retry-After"] == "15"
    assert response["X-RateLimit-Limit"] == "2"
    assert response["X-RateLimit-Remaining"] == "0"
    assert response["X-RateLimit-Reset"] == "15"


def test_view_unauthenticated_not_counted(limited_key, frozen_clock):
    unauthenticated = get_limited_view(None)

    response = get_limited_view(limited_key)

    assert unauthenticated.status_code == 401
    assert "X-RateLimit-Limit" not in unauthenticated
    assert response["X-RateLimit-Remaining"] == "1"


def test_view_without_limits_has_no_headers(organization, database_backend):
    _, _, plaintext = create_team(organization=organization, team_id="acme-free")

    response = get_limited_view(plaintext)

    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_view_fail_closed_returns_503(limited_key, unreachable_redis, settings):
    settings.RATE_LIMIT_FAILURE_MODE = "closed"

    response = get_limited_view(limited_key)

    assert response.status_code == 503
    assert response.data["code"] == "rate_limiter_unavailable"


# Call path


def post_json(client, path, body, headers):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", **headers
    )


def set_limits(team, **limits):
    Team.objects.filter(pk=team.id).update(**limits)
    team.team.refresh_from_db()


def held_slot_count(settings, team_id: str) -> int:
    if not settings.REDIS_URL:
        return CallSlot.objects.filter(team_id=team_id).count()
    client = redis.Redis.from_url(settings.REDIS_URL)
    count = client.zcard(f"{settings.RATE_LIMIT_KEY_PREFIX}{team_id}:slots")
    client.close()
    return count


SINGLE_CALL = {
    "job_type": "summary",
    "model": "chat-fast",
    "messages": [{"role": "user", "content": "Summarise the quarterly report"}],
}


def test_llm_call_counts_and_adds_headers(backend, client, team):
    set_limits(team, requests_per_minute=5)
    created = post_json(client, "/api/jobs/create", {"job_type": "x"}, team.headers)
    job_id = created.json()["job_id"]

    response = post_json(
        client,
        f"/api/jobs/{job_id}/llm-call",
        {"model": "chat-fast", "messages": [{"role": "user", "content": "hi"}]},
        team.headers,
    )

    assert created["X-RateLimit-Remaining"] == "4"
    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == "5"
    assert response["X-RateLimit-Remaining"] == "3"


def test_request_limit_rejects_before_job(backend, client, team):
    set_limits(team, requests_per_minute=1)
    post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)

    response = post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limit_exceeded"
    assert response["X-RateLimit-Remaining"] == "0"
    assert int(response["Retry-After"]) >= 1
    assert Job.objects.filter(team_id=team.id).count() == 1


def test_spent_tokens_reject_next_call(backend, client, team, settings):
    set_limits(team, tokens_per_minute=5)
    first = post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)

    second = post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["code"] == "token_limit_exceeded"
    assert second["X-RateLimit-Limit"] == "5"
    assert Job.objects.filter(team_id=team.id).count() == 1
    assert held_slot_count(settings, team.id) == 0


def test_full_slots_reject_before_job(backend, client, team, settings):
    set_limits(team, max_concurrent_calls=1)
    other_call = acquire_call_slot(team.team)

    response = post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)

    assert response.status_code == 429
    assert response.json()["code"] == "concurrency_limit_exceeded"
    assert response["Retry-After"] == "1"
    assert not Job.objects.filter(team_id=team.id).exists()
    assert Team.objects.get(pk=team.id).credits_held == 0
    release_call_slot(other_call)


def test_slot_released_after_success(backend, client, team, settings):
    set_limits(team, max_concurrent_calls=1)

    replies = [
        post_json(client, "/api/jobs/create-and-call", SINGLE_CALL, team.headers)
        for _ in range(2)
    ]

    assert [reply.status_code for reply in replies] == [200, 200]
    assert held_slot_count(settings, team.id) == 0


def test_slot_released_after_provider_error(
    backend, client, team, access_group, settings
):
    failing = ModelAlias.objects.create(
        alias="chat-broken",
        provider="openai_compatible",
        provider_model="fail-500",
        max_retries=0,
    )
    access_group.aliases.add(failing)
    set_limits(team, max_concurrent_calls=1)

    response = post_json(
        client,
        "/api/jobs/create-and-call",
        {**SINGLE_CALL, "model": "chat-broken"},
        team.headers,
    )

    assert response.status_code == 502
    assert held_slot_count(settings, team.id) == 0


def test_slot_released_when_call_abandoned(backend, team, settings):
    from jobs import services

    set_limits(team, max_concurrent_calls=1)
    job = services.create_job(team=team.team, job_type="x")
    context = services.prepare_call(
        authorization=f"Bearer {team.key}", job_id=job.id, alias_name="chat-fast"
    )
    held_during_call = held_slot_count(settings, team.id)

    services.abandon_call(context=context)

    assert held_during_call == 1
    assert held_slot_count(settings, team.id) == 0
