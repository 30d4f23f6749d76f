"""Redis backend: one counter key per team, kind and window; one lease set per team.

Each operation is a single atomic command, MULTI block or Lua script, so
concurrent workers and instances never lose an update. Windows and lease
expiry use the gateway's clock, passed in by the caller, so every instance
must keep its clock synchronized (NTP).
"""

import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from saasllm.ratelimit.backend import BackendUnavailable

# Seconds to connect to Redis or wait for a reply before the limiter counts
# as unavailable. A healthy Redis replies to these commands in milliseconds, so
# only a fault reaches this.
REDIS_TIMEOUT_SECONDS = 0.5

# Counter keys outlive their one-minute window so that a clock skew of up to
# a minute between instances cannot expire a window that is still in use.
COUNTER_TTL_SECONDS = 120

# KEYS[1]: counter. ARGV: limit, key TTL. Returns the new count, or -1 and
# leaves the counter unchanged when the limit is already reached.
COUNT_REQUEST_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
    return -1
end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
"""

# KEYS[1]: sorted set of lease ids scored by expiry. ARGV: now, limit, lease
# expiry, lease id, set TTL. Drops expired leases, then adds the lease when
# fewer than limit remain. Returns 1 when added, else 0.
ACQUIRE_SLOT_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

UNAVAILABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisBackend:
    def __init__(self, url: str, key_prefix: str):
        # One retry without delay replaces a pooled connection that Redis
        # closed, after a restart for example. The default of redis-py 8.2,
        # ten retries with a backoff of up to one second, would hold each
        # request for seconds while Redis is down. Timeouts are not retried,
        # because the command may have run.
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(
                NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
            ),
        )
        self.key_prefix = key_prefix
        self._count_request = self.client.register_script(COUNT_REQUEST_SCRIPT)
        self._acquire_slot = self.client.register_script(ACQUIRE_SLOT_SCRIPT)

    def counter_key(self, team_id: str, kind: str, window_start: int) -> str:
        return f"{self.key_prefix}{team_id}:{kind}:{window_start}"

    def slots_key(self, team_id: str) -> str:
        return f"{self.key_prefix}{team_id}:slots"

    def count_request(
        self, *, team_id: str, limit: int, window_start: int
    ) -> int | None:
        key = self.counter_key(team_id, "requests", window_start)
        try:
            used = self._count_request(keys=[key], args=[limit, COUNTER_TTL_SECONDS])
        except UNAVAILABLE_ERRORS as error:
            raise BackendUnavailable(str(error)) from error
        return None if used < 0 else used

    def read_tokens(self, *, team_id: str, window_start: int) -> int:
        try:
            used = self.client.get(self.counter_key(team_id, "tokens", window_start))
        except UNAVAILABLE_ERRORS as error:
            raise BackendUnavailable(str(error)) from error
        return int(used or 0)

    def add_tokens(self, *, team_id: str, tokens: int, window_start: int) -> None:
        key = self.counter_key(team_id, "tokens", window_start)
        try:
            with self.client.pipeline(transaction=True) as pipeline:
                pipeline.incrby(key, tokens)
                pipeline.expire(key, COUNTER_TTL_SECONDS)
                pipeline.execute()
        except UNAVAILABLE_ERRORS as error:
            raise BackendUnavailable(str(error)) from error

    def acquire_slot(
        self,
        *,
        team_id: str,
        limit: int,
        lease_id: str,
        now: float,
        expires_at: float,
        ttl_seconds: int,
    ) -> bool:
        try:
            added = self._acquire_slot(
                keys=[self.slots_key(team_id)],
                args=[now, limit, expires_at, lease_id, ttl_seconds],
            )
        except UNAVAILABLE_ERRORS as error:
            raise BackendUnavailable(str(error)) from error
        return added == 1

    def release_slot(self, *, team_id: str, lease_id: str) -> None:
        try:
            self.client.zrem(self.slots_key(team_id), lease_id)
        except UNAVAILABLE_ERRORS as error:
            raise BackendUnavailable(str(error)) from error


_backends: dict[tuple[str, str], RedisBackend] = {}
_backends_lock = threading.Lock()


def get_redis_backend(url: str, key_prefix: str) -> RedisBackend:
    """Return this process's backend for ``url``, sharing its connection pool."""
    with _backends_lock:
        backend = _backends.get((url, key_prefix))
        if backend is None:
            backend = _backends[(url, key_prefix)] = RedisBackend(url, key_prefix)
        return backend
