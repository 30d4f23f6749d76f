"""Team-facing JSON shapes of jobs and calls.

Nothing here names a provider, a provider model or a provider price: teams
see aliases and their own (client) costs only. Money is rendered as decimal
strings so no float rounding reaches clients.
"""

from datetime import datetime
from decimal import Decimal

from catalog.providers import ChatResult
from jobs.models import Job, LLMCall
from jobs.services import Completion

COST_PLACES = Decimal("0.00000001")


def money(value) -> str:
    return f"{Decimal(value or 0).quantize(COST_PLACES):f}"


def created_job(job: Job) -> dict:
    return {"job_id": str(job.id), "status": job.status, "created_at": job.created_at}


def job(job: Job) -> dict:
    aliases = sorted(set(job.calls.values_list("alias", flat=True)))
    return {
        "job_id": str(job.id),
        "team_id": job.team_id,
        "organization_id": job.organization_id,
        "user_id": job.user_id or None,
        "job_type": job.job_type,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "metadata": job.metadata,
        "error_message": job.error_message or None,
        "credit_applied": job.credit_applied,
        "credits_charged": job.credits_charged,
        "model_groups_used": aliases,
    }


def job_metadata(job: Job) -> dict:
    return {"job_id": str(job.id), "metadata": job.metadata}


def completion(completion: Completion) -> dict:
    job, totals = completion.job, completion.totals
    return {
        "job_id": str(job.id),
        "status": job.status,
        "completed_at": job.completed_at,
        "costs": {
            "total_calls": totals["total_calls"],
            "successful_calls": totals["successful_calls"],
            "failed_calls": totals["failed_calls"],
            "total_tokens": totals["total_tokens"],
            "total_cost_usd": money(totals["total_cost_usd"]),
            "avg_latency_ms": totals["avg_latency_ms"],
            "credit_applied": job.credit_applied,
            "credits_charged": job.credits_charged,
            "credits_remaining": completion.credits_remaining,
        },
        "calls": [
            {
                "call_id": str(call.id),
                "purpose": call.purpose or None,
                "model_group": call.alias,
                "tokens": call.total_tokens,
                "latency_ms": call.latency_ms,
                "error": call.error_message or None,
            }
            for call in completion.calls
        ],
    }


def job_costs(job: Job) -> dict:
    calls = list(job.calls.order_by("created_at"))
    total = sum((call.client_cost_usd for call in calls), Decimal(0))
    return {
        "job_id": str(job.id),
        "team_id": job.team_id,
        "job_type": job.job_type,
        "status": job.status,
        "costs": {
            "total_cost_usd": money(total),
            "total_tokens": sum(
                call.total_tokens for call in calls if not call.error_code
            ),
            "credits_charged": job.credits_charged,
            "breakdown": [
                {
                    "call_id": str(call.id),
                    "model": call.alias,
                    "purpose": call.purpose or None,
                    "prompt_tokens": call.prompt_tokens,
                    "completion_tokens": call.completion_tokens,
                    "total_tokens": call.total_tokens,
                    "cost_usd": money(call.client_cost_usd),
                    "latency_ms": call.latency_ms,
                    "error": call.error_message or None,
                    "created_at": call.created_at,
                }
                for call in calls
            ],
        },
    }


def call_response(call: LLMCall, result: ChatResult) -> dict:
    """Build the job API's call result, which is also an OpenAI chat completion."""
    response = {"content": result.content, "finish_reason": result.finish_reason}
    if result.tool_calls:
        response["tool_calls"] = result.tool_calls
    return {
        "call_id": str(call.id),
        "response": response,
        "metadata": {
            "tokens_used": call.total_tokens,
            "latency_ms": call.latency_ms,
            "model": call.alias,
            "model_group": call.alias,
        },
        **chat_completion(call, result),
    }


def chat_completion(call: LLMCall, result: ChatResult) -> dict:
    """Build the OpenAI ``chat.completion`` object of a call, named by its alias."""
    message = {"role": "assistant", "content": result.content}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return {
        "id": f"chatcmpl-{call.id.hex}",
        "object": "chat.completion",
        "created": int(call.created_at.timestamp()),
        "model": call.alias,
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason}
        ],
        "usage": {
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "total_tokens": call.total_tokens,
        },
    }


def single_call_response(call: LLMCall, result: ChatResult, done: Completion) -> dict:
    """Build the create-and-call result: the call result plus the closed job."""
    body = call_response(call, result)
    summary = completion(done)
    body.update(
        {
            "job_id": summary["job_id"],
            "status": summary["status"],
            "completed_at": summary["completed_at"],
            "costs": summary["costs"],
        }
    )
    return body


def model_object(alias: str, created_at: datetime) -> dict:
    """Build the OpenAI ``model`` object of an alias; it names no provider."""
    return {
        "id": alias,
        "object": "model",
        "created": int(created_at.timestamp()),
        "owned_by": "saasllm",
    }
