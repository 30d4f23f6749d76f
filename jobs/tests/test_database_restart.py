"""A served gateway under load while its PostgreSQL connections are cut.

A TCP proxy sits between gunicorn and PostgreSQL. Client threads keep
calling create-and-call and /v1/chat/completions while the proxy closes
every database connection, and each new one, for a few seconds, as a
restarting server does. Calls whose provider replies during the gap are
recorded when the database is back. Calls that find no database get 503
database_unavailable. Afterwards the database must hold every successful
call exactly once and charge each job what its response reported.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from catalog.models import ModelAlias
from jobs.models import Job, LLMCall
from saasllm.test_proxy import TCPProxy
from saasllm.test_servers import gunicorn_process
from teams.models import CreditTransaction, Team

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]

GAP_SECONDS = 4.0
WARM_UP_SECONDS = 1.5
AFTER_GAP_SECONDS = 5.0
# The pool retries a connection after 1 s and then every 2 s, so every
# request that starts this long after the database is back must succeed.
RECOVERY_SECONDS = 3.0
RETRY_SECONDS = 10
# The slow model replies after this many seconds, within the gap when its
# call is admitted shortly before the cut.
SLOW_MODEL = "slow-2"
SLOW_SECONDS = 2.0
# No request may take this long: the pool's 30-second timeout never runs out.
MAX_REQUEST_SECONDS = 20.0
CLIENT_TIMEOUT_SECONDS = 40
PAUSE_SECONDS = 0.02

CREATE_AND_CALL = "/api/jobs/create-and-call"
CHAT_COMPLETIONS = "/v1/chat/completions"


@dataclass
class Reply:
    path: str
    model: str
    started: float
    finished: float
    status: int | None = None
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def job_id(self) -> str | None:
        return self.headers.get("x-job-id")

    @property
    def error_code(self) -> str | None:
        if self.path == CHAT_COMPLETIONS:
            return self.body["error"]["code"]
        return self.body["code"]


def job_type(model: str) -> str:
    return "restart-slow" if model == "chat-slow" else "restart-fast"


def post(base_url: str, path: str, key: str, model: str, content: str) -> Reply:
    """Send one call for ``model``, in a job of its own, and return the reply."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 20,
    }
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if path == CHAT_COMPLETIONS:
        headers["X-Job-Type"] = job_type(model)
    else:
        body["job_type"] = job_type(model)
    request = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), method="POST", headers=headers
    )
    reply = Reply(path=path, model=model, started=time.monotonic(), finished=0)
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_SECONDS) as raw:
            reply.status, content, raw_headers = raw.status, raw.read(), raw.headers
    except urllib.error.HTTPError as error:
        reply.status, content, raw_headers = error.code, error.read(), error.headers
    except OSError as error:
        reply.finished = time.monotonic()
        reply.error = repr(error)
        return reply
    reply.finished = time.monotonic()
    reply.headers = {name.lower(): value for name, value in raw_headers.items()}
    try:
        reply.body = json.loads(content)
    except ValueError:
        reply.error = f"not JSON: {content[:200]!r}"
    return reply


class Load:
    """Client threads that call the gateway until stopped, keeping every reply."""

    def __init__(self, base_url: str, key: str, plan: list[tuple[str, str]]):
        self.base_url = base_url
        self.key = key
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(number, path, model))
            for number, (path, model) in enumerate(plan)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop_sending(self) -> None:
        """Start no more requests; those in flight go on."""
        self._stopped.set()

    def stop(self) -> None:
        self.stop_sending()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def summary(self) -> dict[tuple[str, int | None], int]:
        """Count the replies so far by model and status."""
        with self._lock:
            return dict(Counter((reply.model, reply.status) for reply in self.replies))

    def _run(self, number: int, path: str, model: str) -> None:
        count = 0
        while not self._stopped.is_set():
            count += 1
            content = f"thread {number} request {count}"
            reply = post(self.base_url, path, self.key, model, content)
            with self._lock:
                self.replies.append(reply)
            time.sleep(PAUSE_SECONDS)


@pytest.fixture
def load_team(team_factory, access_group):
    """A team charged per token, with enough credits for a few thousand calls."""
    access_group.aliases.add(
        ModelAlias.objects.create(
            alias="chat-slow",
            provider="openai_compatible",
            provider_model=SLOW_MODEL,
            input_price_per_million="1",
            output_price_per_million="2",
            max_retries=0,
        )
    )
    return team_factory(
        "restart-load",
        credits=1_000_000,
        budget_mode=Team.BudgetMode.CONSUMPTION_TOKENS,
        tokens_per_credit=1,
    )


def proxied_database_url(proxy: TCPProxy) -> str:
    settings_dict = connection.settings_dict
    return (
        f"postgres://{settings_dict['USER']}@127.0.0.1:{proxy.port}/"
        f"{settings_dict['NAME']}"
    )


def slow_calls_answering_in_gap(team_id: str) -> set[str]:
    """Return the ids of slow jobs whose provider will reply within the gap.

    Their call was admitted between 0.2 and 1.5 seconds ago, so the client
    has its job id and the provider replies 0.5 to 1.8 seconds from now.
    """
    now = timezone.now()
    jobs = Job.objects.filter(
        team_id=team_id,
        calls_in_flight__gt=0,
        job_type="restart-slow",
        created_at__gte=now - timedelta(seconds=SLOW_SECONDS - 0.5),
        created_at__lte=now - timedelta(seconds=0.2),
    )
    return {str(job_id) for job_id in jobs.values_list("id", flat=True)}


def wait_for_slow_calls(team_id: str, load: Load) -> set[str]:
    deadline = time.monotonic() + 20
    while not (job_ids := slow_calls_answering_in_gap(team_id)):
        assert time.monotonic() < deadline, (
            f"no slow call was admitted in time; replies so far: {load.summary()}"
        )
        time.sleep(0.02)
    return job_ids


def expected_credits(reply: Reply) -> int:
    """Return the credits a successful reply's job costs at one token per credit."""
    if reply.path == CREATE_AND_CALL:
        return reply.body["costs"]["credits_charged"]
    return max(1, reply.body["usage"]["total_tokens"])


PROBE_PLAN = [(CREATE_AND_CALL, "chat-fast"), (CHAT_COMPLETIONS, "chat-fast")]
LOAD_PLAN = [
    (CREATE_AND_CALL, "chat-fast"),
    (CREATE_AND_CALL, "chat-fast"),
    (CHAT_COMPLETIONS, "chat-fast"),
    (CHAT_COMPLETIONS, "chat-fast"),
    (CREATE_AND_CALL, "chat-slow"),
    (CREATE_AND_CALL, "chat-slow"),
    (CHAT_COMPLETIONS, "chat-slow"),
]


def test_gateway_survives_database_restart(load_team):
    database_port = int(connection.settings_dict["PORT"] or 5432)
    with (
        TCPProxy(database_port) as proxy,
        gunicorn_process(
            DATABASE_URL=proxied_database_url(proxy),
            DATABASE_RETRY_SECONDS=str(RETRY_SECONDS),
        ) as (base_url, server),
    ):
        load = Load(base_url, load_team.key, LOAD_PLAN)
        load.start()
        time.sleep(WARM_UP_SECONDS)
        answering_in_gap = wait_for_slow_calls(load_team.id, load)
        proxy.cut()
        cut_at = time.monotonic()
        # Calls that start in the gap: the load's threads may all be busy
        # with calls whose provider has answered.
        probes = Load(base_url, load_team.key, PROBE_PLAN)
        probes.start()
        time.sleep(GAP_SECONDS)
        probes.stop_sending()
        proxy.restore()
        restored_at = time.monotonic()
        time.sleep(AFTER_GAP_SECONDS)
        load.stop()
        probes.stop()
        final = post(
            base_url, CREATE_AND_CALL, load_team.key, "chat-fast", "after the gap"
        )
        server_running = server.poll() is None
        rejected = proxy.rejected_count

    replies = [*load.replies, *probes.replies, final]
    succeeded = [reply for reply in replies if reply.status == 200]
    failed = [reply for reply in replies if reply.status != 200]
    late = [
        reply for reply in replies if reply.started >= restored_at + RECOVERY_SECONDS
    ]

    # Every request got an HTTP response in bounded time.
    assert [reply.error for reply in replies if reply.error] == []
    assert max(reply.seconds for reply in replies) < MAX_REQUEST_SECONDS
    # Failures are 503 database_unavailable, and only around the gap.
    assert rejected > 0, "the gateway did not try to reconnect in the gap"
    assert probes.replies
    assert {reply.status for reply in failed} <= {503}
    assert {reply.error_code for reply in failed} <= {"database_unavailable"}
    for reply in failed:
        assert reply.headers["retry-after"] == "2"
        assert reply.finished > cut_at
        assert reply.started < restored_at + RECOVERY_SECONDS
        if reply.path == CHAT_COMPLETIONS:
            assert reply.body["error"]["type"] == "api_error"
    # The gateway recovered by itself.
    assert server_running
    assert final.status == 200
    assert len(late) >= 20
    assert {reply.status for reply in late} == {200}

    ok_jobs = {reply.job_id: reply for reply in succeeded}
    # Slow calls whose provider answered while the database was away.
    assert answering_in_gap <= set(ok_jobs)
    in_gap = [ok_jobs[job_id] for job_id in answering_in_gap]
    assert all(reply.finished > restored_at for reply in in_gap)

    # Each successful reply names its own job, charged what the reply says.
    assert len(ok_jobs) == len(succeeded)
    jobs = {
        str(job.id): job
        for job in Job.objects.filter(team_id=load_team.id).annotate(
            recorded_calls=Count("calls")
        )
    }
    for job_id, reply in ok_jobs.items():
        job = jobs[job_id]
        assert job.status == Job.Status.COMPLETED, job_id
        assert job.recorded_calls == 1, job_id
        assert job.credits_charged == expected_credits(reply), job_id
    # Jobs of failed requests were never charged and hold no call.
    for job_id in set(jobs) - set(ok_jobs):
        job = jobs[job_id]
        assert job.status in Job.OPEN_STATUSES, job_id
        assert job.credits_charged == 0, job_id
        assert job.recorded_calls == 0, job_id

    # Calls recorded are the calls answered; one deduction per charged job.
    calls = LLMCall.objects.filter(team_id=load_team.id)
    assert calls.count() == len(succeeded)
    assert not calls.exclude(error_code="").exists()
    deductions = CreditTransaction.objects.filter(
        team_id=load_team.id, type=CreditTransaction.Type.DEDUCTION
    )
    per_job = deductions.values("job_id").annotate(count=Count("id"))
    assert {row["count"] for row in per_job} == {1}
    assert {str(row["job_id"]) for row in per_job} == set(ok_jobs)
    charged = sum(expected_credits(reply) for reply in succeeded)
    assert -deductions.aggregate(total=Sum("amount"))["total"] == charged
    assert Team.objects.get(pk=load_team.id).credits_used == charged
    call_command("check_ledger", "--team", load_team.id, stderr=StringIO())


def wait_for_admitted_jobs(team_id: str, count: int) -> set[str]:
    """Wait until ``count`` jobs of the team have a call in flight; return their ids."""
    deadline = time.monotonic() + 10
    while True:
        job_ids = {
            str(job_id)
            for job_id in Job.objects.filter(
                team_id=team_id, calls_in_flight__gt=0
            ).values_list("id", flat=True)
        }
        if len(job_ids) >= count:
            return job_ids
        assert time.monotonic() < deadline, "the calls were not admitted"
        time.sleep(0.02)


def test_gap_longer_than_retry_fails_cleanly(load_team):
    database_port = int(connection.settings_dict["PORT"] or 5432)
    replies: list[Reply] = []
    with (
        TCPProxy(database_port) as proxy,
        gunicorn_process(
            DATABASE_URL=proxied_database_url(proxy), DATABASE_RETRY_SECONDS="1"
        ) as (base_url, _),
    ):
        callers = [
            threading.Thread(
                target=lambda path=path: replies.append(
                    post(base_url, path, load_team.key, "chat-slow", "outlasted")
                )
            )
            for path in (CREATE_AND_CALL, CHAT_COMPLETIONS)
        ]
        for caller in callers:
            caller.start()
        admitted = wait_for_admitted_jobs(load_team.id, 2)
        proxy.cut()
        for caller in callers:
            caller.join(CLIENT_TIMEOUT_SECONDS)
        proxy.restore()
        time.sleep(RECOVERY_SECONDS)
        after = post(base_url, CREATE_AND_CALL, load_team.key, "chat-fast", "back")

    # The provider answered, the database stayed away past the retries.
    assert len(replies) == 2
    for reply in replies:
        assert reply.status == 503, reply
        assert reply.error_code == "database_unavailable"
        assert reply.seconds < MAX_REQUEST_SECONDS
    assert {reply.job_id for reply in replies} == admitted
    openai_reply = next(r for r in replies if r.path == CHAT_COMPLETIONS)
    assert openai_reply.body["error"]["type"] == "api_error"
    assert after.status == 200
    # Nothing of the lost calls was stored or charged; their jobs stay open,
    # holding their credits until expire_jobs closes them.
    for job in Job.objects.filter(pk__in=admitted):
        assert job.status == Job.Status.PENDING
        assert job.calls_in_flight == 1
        assert job.credits_charged == 0
    assert not LLMCall.objects.filter(job_id__in=admitted).exists()
    assert not CreditTransaction.objects.filter(job_id__in=admitted).exists()
    call_command("check_ledger", "--team", load_team.id, stderr=StringIO())
