"""Rate limits in DRF views."""

from saasllm.ratelimit.limits import RateLimited, RateLimitState, check_request
from teams.models import Team


class TeamRateLimitMixin:
    """Count team requests against ``requests_per_minute`` and add X-RateLimit-* headers.

    List it before the APIView base. Once authentication has set
    ``request.user`` to a Team, each request is counted in ``initial``.
    Views that authenticate inside their handler (the async LLM call views)
    call check_request themselves and store its result in
    ``rate_limit_state``. A 429 gets the headers of the limit that rejected
    it.
    """

    rate_limit_state: RateLimitState | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.user, Team):
            self.rate_limit_state = check_request(request.user)

    def handle_exception(self, exc):
        if isinstance(exc, RateLimited) and exc.state is not None:
            self.rate_limit_state = exc.state
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.rate_limit_state is not None:
            for header, value in self.rate_limit_state.headers().items():
                response[header] = value
        return response
