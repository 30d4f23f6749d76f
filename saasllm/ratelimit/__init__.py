"""Per-team rate limits enforced across all workers and instances.

See ``saasllm.ratelimit.limits`` for the rules and the backends.
"""

from saasllm.ratelimit.limits import (
    RateLimited,
    RateLimiterUnavailable,
    RateLimitState,
    SlotLease,
    acquire_call_slot,
    check_request,
    check_tokens,
    record_tokens,
    release_call_slot,
)
from saasllm.ratelimit.views import TeamRateLimitMixin

__all__ = [
    "RateLimitState",
    "RateLimited",
    "RateLimiterUnavailable",
    "SlotLease",
    "TeamRateLimitMixin",
    "acquire_call_slot",
    "check_request",
    "check_tokens",
    "record_tokens",
    "release_call_slot",
]
