"""Failed dashboard logins are limited per address (server/dashboard/login_limit.py)."""

from __future__ import annotations

from headwater.server.dashboard.login_limit import ATTEMPTS, PERIOD_MS, LoginAttempts


def test_failures_beyond_the_allowance_must_wait_and_others_are_not_affected() -> None:
    attempts = LoginAttempts()
    for _ in range(ATTEMPTS):
        assert attempts.wait_ms("10.0.0.1", 0) == 0
        attempts.failed("10.0.0.1", 0)
    assert attempts.wait_ms("10.0.0.1", 0) == PERIOD_MS // ATTEMPTS
    assert attempts.wait_ms("10.0.0.2", 0) == 0  # per address
    assert attempts.wait_ms("10.0.0.1", PERIOD_MS // ATTEMPTS) == 0  # one more per interval


def test_an_address_that_never_failed_waits_for_nothing() -> None:
    assert LoginAttempts().wait_ms("10.0.0.3", 123) == 0
