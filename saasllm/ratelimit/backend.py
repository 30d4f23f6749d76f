"""Interface of the limiter's storage backends."""

from typing import Protocol


class BackendUnavailable(Exception):
    """The backend could not be reached, so nothing was counted."""


class Backend(Protocol):
    def count_request(
        self, *, team_id: str, limit: int, window_start: int
    ) -> int | None:
        """Add one request to the window unless ``limit`` are counted already.

        Return the window's new count, or None when the limit was reached.
        """

    def read_tokens(self, *, team_id: str, window_start: int) -> int:
        """Return the tokens counted in the window."""

    def add_tokens(self, *, team_id: str, tokens: int, window_start: int) -> None:
        """Add ``tokens`` to the window."""

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
        """Add the lease unless ``limit`` unexpired leases exist; return whether added."""

    def release_slot(self, *, team_id: str, lease_id: str) -> None:
        """Delete the lease; an unknown or expired lease is ignored."""
