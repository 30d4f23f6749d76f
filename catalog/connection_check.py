"""Test a provider credential with one tiny chat call, for the admin.

The result is for operators: it contains the provider's error text with keys
and key-like strings removed, but never the credential's key.
"""

import logging
import time
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings

from audit.services import record
from catalog.crypto import DecryptionFailed, decrypt_secret
from catalog.models import ProviderCredential
from catalog.providers import ProviderError, ProviderTarget, complete_chat
from catalog.providers.errors import redact_detail

logger = logging.getLogger(__name__)

TEST_MESSAGES = [{"role": "user", "content": "Reply with OK."}]
TEST_PARAMS = {"max_tokens": 1}
# An admin page waits for the test, so it gets a shorter deadline than calls.
MAX_TEST_SECONDS = 20.0


@dataclass(frozen=True)
class ConnectionCheckResult:
    """The outcome of a test call.

    ``code`` is the team-facing error code and ``message`` its sentence;
    ``operator_detail`` is the provider's redacted text. All three are empty
    after a success.
    """

    credential_id: str
    model: str
    succeeded: bool
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    code: str = ""
    message: str = ""
    operator_detail: str = ""
    upstream_status: int | None = None


def check_connection(
    *, credential: ProviderCredential, model: str, actor
) -> ConnectionCheckResult:
    """Send one chat call through ``complete_chat`` and record the outcome.

    Records ``credential.test`` in the audit log with the model and the
    result code. Never raises a ProviderError: a failure is the result.
    """
    try:
        api_key = decrypt_secret(credential.encrypted_api_key)
    except DecryptionFailed:
        result = ConnectionCheckResult(
            credential_id=str(credential.pk),
            model=model,
            succeeded=False,
            code="model_unavailable",
            message="The stored key cannot be decrypted.",
            operator_detail="The key does not decrypt under any ENCRYPTION_KEY "
            "entry. Save the credential with its key again.",
        )
    else:
        result = _call_provider(credential, model, api_key)

    record(
        actor=actor,
        action="credential.test",
        obj=credential,
        changes={"model": model, "result": result.code or "ok"},
    )
    logger.info(
        "Tested credential %s with model %s: %s",
        credential.pk,
        model,
        result.code or "ok",
    )
    return result


def _call_provider(
    credential: ProviderCredential, model: str, api_key: str
) -> ConnectionCheckResult:
    target = ProviderTarget(
        provider=credential.provider,
        model=model,
        api_key=api_key,
        api_base=credential.api_base,
        api_version=credential.api_version,
        timeout=min(settings.PROVIDER_TIMEOUT_SECONDS, MAX_TEST_SECONDS),
    )
    started = time.monotonic()
    try:
        reply = async_to_sync(complete_chat)(target, TEST_MESSAGES, dict(TEST_PARAMS))
    except ProviderError as error:
        return ConnectionCheckResult(
            credential_id=str(credential.pk),
            model=model,
            succeeded=False,
            latency_ms=_elapsed_ms(started),
            code=error.code,
            message=str(error.message),
            operator_detail=redact_detail(error.operator_detail, secrets=(api_key,)),
            upstream_status=error.upstream_status,
        )
    return ConnectionCheckResult(
        credential_id=str(credential.pk),
        model=model,
        succeeded=True,
        latency_ms=_elapsed_ms(started),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
