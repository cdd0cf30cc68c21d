"""The one error tree of Headwater.

    HeadwaterError                    root: `except HeadwaterError` catches all of ours
    ├── ConfigurationError            bad settings, missing keys, unusable URLs
    ├── EventValidationError          an event is malformed (names the event's index and field)
    ├── ExpressionError               a CEL expression does not compile, breaks a policy, or fails
    ├── SendError                     the server refused or could not take a send
    │   ├── SendRejectedError         4xx: the server's message, never retried
    │   └── SendFailedError           network errors or 5xx after every retry
    ├── StoreError                    the database failed or is in an unexpected state
    │   └── MigrationError            a migration could not be applied
    ├── ReplayError                   a run or bulk replay cannot be started (names the reason)
    ├── CancellationError             a bulk cancellation cannot be started (names the reason)
    └── CryptoError                   encryption problems
        ├── UnknownKeyError           a ciphertext names a key id the key ring does not hold
        └── DecryptionError           tampered or corrupt ciphertext

Every error that reaches an HTTP client carries a stable `code` (see `server/responses.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta


class HeadwaterError(Exception):
    """The root of every error Headwater raises on purpose."""

    code = "headwater_error"


class ConfigurationError(HeadwaterError):
    code = "configuration_error"


class EventValidationError(HeadwaterError):
    """One event of a send is malformed; the whole send is rejected and nothing is stored."""

    code = "invalid_event"

    def __init__(self, index: int, field: str, problem: str) -> None:
        self.index = index
        self.field = field
        self.problem = problem
        super().__init__(
            f"event {index}: {field} {problem}" if field else f"event {index}: {problem}"
        )


class ExpressionError(HeadwaterError):
    """A CEL expression does not compile, breaks a validation policy, or failed to evaluate.

    `source` is the expression's text.
    """

    code = "invalid_expression"

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(message)


class SendError(HeadwaterError):
    code = "send_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class SendRejectedError(SendError):
    """The server answered 4xx; `str(error)` is the server's own message."""

    code = "send_rejected"


class SendFailedError(SendError):
    """The send could not be delivered after every retry (network errors or 5xx)."""

    code = "send_failed"


class StoreError(HeadwaterError):
    code = "store_error"


class MigrationError(StoreError):
    code = "migration_error"


class ReplayError(HeadwaterError):
    """A replay cannot be started; `code` says why (not found, still running, bad request)."""

    code = "replay_error"

    def __init__(self, message: str, code: str = "replay_error") -> None:
        self.code = code
        super().__init__(message)


class CancellationError(HeadwaterError):
    """A bulk cancellation cannot be started; `code` says why (invalid_request,
    invalid_expression)."""

    code = "cancellation_error"

    def __init__(self, message: str, code: str = "cancellation_error") -> None:
        self.code = code
        super().__init__(message)


class CryptoError(HeadwaterError):
    code = "crypto_error"


class UnknownKeyError(CryptoError):
    code = "unknown_key"


class DecryptionError(CryptoError):
    code = "decryption_failed"


class FunctionDefinitionError(HeadwaterError):
    """A function's configuration is invalid (reported when it is defined, not when it runs)."""

    code = "invalid_function"


class NonRetriableError(HeadwaterError):
    """Raise from a function or step to fail it at once, without further attempts."""

    code = "non_retriable_error"


class RetryAfterError(HeadwaterError):
    """Raise from a function or step to retry it, but not before `retry_after`
    (a timedelta from now, a number of seconds, or an aware datetime)."""

    code = "retry_after_error"

    def __init__(self, message: str, retry_after: timedelta | float | datetime) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StepError(HeadwaterError):
    """A step failed for good (its last attempt, or a NonRetriableError); raised in the function
    at that step so user code can catch it. `name`, `message` and `stack` are the original's."""

    code = "step_failed"

    def __init__(self, step: str, name: str, message: str, stack: str | None = None) -> None:
        self.step = step
        self.name = name
        self.original_message = message
        self.stack = stack
        super().__init__(f"step {step!r} failed: {name}: {message}")


class NonDeterminismError(HeadwaterError):
    """A resumed run reached steps other than those it recorded: the function's code or inputs
    changed between attempts, so its memoized results can no longer be trusted."""

    code = "non_determinism"


class StepLimitError(HeadwaterError):
    """A run exceeded a limit on its steps (count, one output's size, or the whole state)."""

    code = "step_limit_exceeded"
