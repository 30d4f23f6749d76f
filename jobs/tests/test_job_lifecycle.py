from decimal import Decimal

import pytest

from jobs.models import Job, LLMCall
from jobs.tests.conftest import post_json
from teams.models import CreditTransaction, Team


def test_llm_call_returns_reply_and_records_call(
    team, create_job, call_job, fake_provider
):
    job_id = create_job()

    response = call_job(job_id)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"]["content"].startswith(
        "Echo: Summarise the quarterly report"
    )
    assert body["response"]["finish_reason"] == "stop"
    assert body["metadata"]["model"] == "chat-fast"
    assert body["metadata"]["model_group"] == "chat-fast"
    assert body["object"] == "chat.completion"
    assert body["model"] == "chat-fast"
    assert body["choices"][0]["message"]["role"] == "assistant"
    call = LLMCall.objects.get(pk=body["call_id"])
    assert call.prompt_tokens > 0
    assert call.completion_tokens > 0
    assert body["usage"]["total_tokens"] == call.total_tokens
    assert body["metadata"]["tokens_used"] == call.total_tokens
    assert call.purpose == "summary"
    assert call.provider_model == "fake-gpt-small"
    assert call.input_price_per_million == Decimal("0.15")
    expected_cost = (
        Decimal(call.prompt_tokens) * Decimal("0.15")
        + Decimal(call.completion_tokens) * Decimal("0.6")
    ) / 1_000_000
    assert call.provider_cost_usd == expected_cost
    assert call.client_cost_usd == expected_cost
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.started_at is not None


def test_llm_call_sends_only_given_parameters(create_job, call_job, fake_provider):
    job_id = create_job()
    fake_provider.requests.clear()

    response = call_job(
        job_id,
        {
            "model_group": "chat-fast",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 50,
        },
    )

    assert response.status_code == 200, response.content
    sent = fake_provider.requests[-1]["body"]
    assert sent["max_tokens"] == 50
    assert "temperature" not in sent
    assert "top_p" not in sent
    assert sent["model"] == "fake-gpt-small"


def test_llm_call_merges_call_metadata(create_job, call_job):
    job_id = create_job(metadata={"source": "upload"})

    call_job(
        job_id,
        {
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "hi"}],
            "call_metadata": {"step": 1},
        },
    )

    assert Job.objects.get(pk=job_id).metadata == {"source": "upload", "step": 1}


def test_llm_call_with_unusable_alias_is_403(create_job, call_job, alias):
    job_id = create_job()
    alias.status = "inactive"
    alias.save(update_fields=["status"])

    inactive = call_job(job_id)
    unknown = call_job(
        job_id,
        {"model": "no-such-alias", "messages": [{"role": "user", "content": "x"}]},
    )

    assert inactive.status_code == 403
    assert inactive.json()["code"] == "model_not_allowed"
    assert unknown.status_code == 403
    assert unknown.json()["code"] == "model_not_allowed"
    assert not LLMCall.objects.exists()


def test_llm_call_validates_body(create_job, call_job):
    job_id = create_job()

    response = call_job(
        job_id,
        {"messages": [], "temperature": 5, "response_format": {"type": "xml"}},
    )

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {"messages", "temperature", "response_format"} <= set(errors)


def test_llm_call_without_model_is_422(create_job, call_job):
    job_id = create_job()

    response = call_job(job_id, {"messages": [{"role": "user", "content": "x"}]})

    assert response.status_code == 422
    assert "model" in response.json()["errors"]


def test_llm_call_on_closed_job_is_409(create_job, call_job, complete_job):
    job_id = create_job()
    call_job(job_id)
    complete_job(job_id)

    response = call_job(job_id)

    assert response.status_code == 409
    assert response.json()["code"] == "job_closed"
    assert LLMCall.objects.filter(job_id=job_id).count() == 1


def test_closed_job_409_before_catalog_errors(
    create_job, call_job, complete_job, credential
):
    job_id = create_job()
    complete_job(job_id)
    credential.delete()

    response = call_job(job_id)

    assert response.status_code == 409
    assert response.json()["code"] == "job_closed"


def test_complete_charges_one_credit_once(team, create_job, call_job, complete_job):
    job_id = create_job()
    call_job(job_id)
    call_job(job_id)

    first = complete_job(job_id, metadata={"result": "ok"})
    second = complete_job(job_id)

    assert first.status_code == 200, first.content
    assert second.status_code == 200
    assert first.json() == second.json()
    costs = first.json()["costs"]
    assert costs["total_calls"] == 2
    assert costs["successful_calls"] == 2
    assert costs["failed_calls"] == 0
    assert costs["credit_applied"] is True
    assert costs["credits_charged"] == 1
    assert costs["credits_remaining"] == 9
    assert len(first.json()["calls"]) == 2
    job = Job.objects.get(pk=job_id)
    assert job.status == "completed"
    assert job.metadata == {"result": "ok"}
    assert job.credits_held == 0
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_used == 1
    assert team_row.credits_held == 0
    deductions = CreditTransaction.objects.filter(job_id=job_id)
    assert deductions.count() == 1
    assert deductions.get().amount == -1
    assert deductions.get().balance_before == 10
    assert deductions.get().balance_after == 9


@pytest.mark.parametrize("status", ["failed", "cancelled", "FAILED"])
def test_failed_and_cancelled_jobs_cost_nothing(
    team, create_job, call_job, complete_job, status
):
    job_id = create_job()
    call_job(job_id)

    response = complete_job(job_id, status=status, error_message="parser crashed")

    assert response.status_code == 200
    assert response.json()["status"] == status.lower()
    assert response.json()["costs"]["credits_charged"] == 0
    assert Team.objects.get(pk=team.id).credits_used == 0
    assert Team.objects.get(pk=team.id).credits_held == 0
    assert Job.objects.get(pk=job_id).error_message == "parser crashed"
    assert not CreditTransaction.objects.filter(job_id=job_id).exists()


def test_completed_job_without_successful_call_costs_nothing(
    team, create_job, complete_job
):
    job_id = create_job()

    response = complete_job(job_id)

    assert response.json()["costs"]["credits_charged"] == 0
    assert Team.objects.get(pk=team.id).credits_remaining == 10


def test_other_status_on_closed_job_is_409(create_job, call_job, complete_job):
    job_id = create_job()
    call_job(job_id)
    complete_job(job_id)

    response = complete_job(job_id, status="failed")

    assert response.status_code == 409
    assert response.json()["code"] == "job_already_closed"
    assert Job.objects.get(pk=job_id).status == "completed"


def test_complete_rejects_unknown_status(create_job, complete_job):
    job_id = create_job()

    response = complete_job(job_id, status="done")

    assert response.status_code == 422
    assert "status" in response.json()["errors"]


def test_get_job_and_merge_metadata(client, team, create_job, call_job):
    job_id = create_job(metadata={"a": 1, "b": 2})
    call_job(job_id)

    patched = client.patch(
        f"/api/jobs/{job_id}/metadata",
        data='{"metadata": {"b": 3, "c": 4}}',
        content_type="application/json",
        **team.headers,
    )
    fetched = client.get(f"/api/jobs/{job_id}", **team.headers)

    assert patched.status_code == 200
    assert patched.json()["metadata"] == {"a": 1, "b": 3, "c": 4}
    body = fetched.json()
    assert body["status"] == "in_progress"
    assert body["metadata"] == {"a": 1, "b": 3, "c": 4}
    assert body["model_groups_used"] == ["chat-fast"]
    assert body["team_id"] == team.id


def test_costs_show_client_cost_without_provider_details(
    client, team, create_job, call_job
):
    team.team.markup_percent = Decimal("50")
    team.team.save(update_fields=["markup_percent"])
    job_id = create_job()
    call_job(job_id)

    response = client.get(f"/api/jobs/{job_id}/costs", **team.headers)

    assert response.status_code == 200
    text = response.content.decode()
    assert "fake-gpt-small" not in text
    assert "openai" not in text
    call = LLMCall.objects.get(job_id=job_id)
    assert call.client_cost_usd == (call.provider_cost_usd * Decimal("1.5")).quantize(
        Decimal("0.0000000001")
    )
    breakdown = response.json()["costs"]["breakdown"]
    assert breakdown[0]["model"] == "chat-fast"
    assert Decimal(breakdown[0]["cost_usd"]) == call.client_cost_usd.quantize(
        Decimal("0.00000001")
    )


def test_unknown_and_malformed_job_ids_are_404(client, team):
    for job_id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"]:
        response = client.get(f"/api/jobs/{job_id}", **team.headers)

        assert response.status_code == 404
        assert response.json()["code"] == "job_not_found"


def test_outsider_gets_404_for_team_jobs(client, team, outsider, create_job, call_job):
    job_id = create_job()
    call_job(job_id)

    responses = [
        client.get(f"/api/jobs/{job_id}", **outsider.headers),
        client.get(f"/api/jobs/{job_id}/costs", **outsider.headers),
        client.patch(
            f"/api/jobs/{job_id}/metadata",
            data='{"metadata": {"x": 1}}',
            content_type="application/json",
            **outsider.headers,
        ),
        post_json(
            client,
            f"/api/jobs/{job_id}/complete",
            {"status": "completed"},
            outsider.headers,
        ),
        call_job(job_id, fixture=outsider),
    ]

    for response in responses:
        assert response.status_code == 404, response.request["PATH_INFO"]
        assert response.json()["code"] == "job_not_found"
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert "x" not in job.metadata
    assert LLMCall.objects.filter(job_id=job_id).count() == 1
