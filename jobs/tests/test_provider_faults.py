import pytest

from catalog.models import ProviderCredential
from jobs.models import Job, LLMCall

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"


def assert_reveals_nothing(response, provider_model):
    text = response.content.decode()
    for leaked in [
        provider_model,
        "openai",
        "fake-gpt",
        PROVIDER_SECRET,
        "upstream-secret-text",
    ]:
        assert leaked not in text, leaked


@pytest.mark.parametrize(
    ("provider_model", "status", "code"),
    [
        ("fail-500", 502, "provider_error"),
        ("malformed", 502, "provider_bad_response"),
        ("bad-shape", 502, "provider_bad_response"),
        ("fail-401", 502, "provider_auth_failed"),
    ],
)
def test_provider_failure_is_recorded_and_hidden(
    create_job, call_job, faulty_alias, provider_model, status, code
):
    faulty_alias(provider_model)
    job_id = create_job()

    response = call_job(
        job_id,
        {"model": "chat-faulty", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert response.status_code == status
    assert response.json()["code"] == code
    assert_reveals_nothing(response, provider_model)
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == code
    assert call.total_tokens == 0
    assert call.client_cost_usd == 0
    assert Job.objects.get(pk=job_id).status == "in_progress"


def test_provider_timeout_is_504(settings, create_job, call_job, faulty_alias):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    faulty_alias("slow-3")
    job_id = create_job()

    response = call_job(
        job_id,
        {"model": "chat-faulty", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert response.status_code == 504
    assert response.json()["code"] == "provider_timeout"
    assert_reveals_nothing(response, "slow-3")
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_timeout"
    assert call.latency_ms >= 250


def test_connection_refused_is_502(create_job, call_job, credential, closed_port):
    credential.api_base = f"http://127.0.0.1:{closed_port}/v1"
    credential.save(update_fields=["api_base"])
    job_id = create_job()

    response = call_job(job_id)

    assert response.status_code == 502
    assert response.json()["code"] == "provider_unreachable"
    assert_reveals_nothing(response, "fake-gpt-small")
    assert str(closed_port) not in response.content.decode()
    assert LLMCall.objects.get(job_id=job_id).error_code == "provider_unreachable"


def test_missing_credential_is_503(create_job, call_job, credential):
    ProviderCredential.objects.filter(pk=credential.pk).update(is_active=False)
    job_id = create_job()

    response = call_job(job_id)

    assert response.status_code == 503
    assert response.json()["code"] == "model_unavailable"
    assert not LLMCall.objects.exists()


def test_only_failed_calls_charge_nothing(
    team, create_job, call_job, complete_job, faulty_alias
):
    faulty_alias("fail-500")
    job_id = create_job()
    call_job(
        job_id, {"model": "chat-faulty", "messages": [{"role": "user", "content": "x"}]}
    )

    response = complete_job(job_id)

    costs = response.json()["costs"]
    assert costs["failed_calls"] == 1
    assert costs["credits_charged"] == 0
    assert response.json()["calls"][0]["error"]
    assert "upstream-secret-text" not in response.content.decode()
