"""The one error tree of Headwater.

    HeadwaterError                    root: `except HeadwaterError` catches all of ours
    ├── ConfigurationError            bad settings, missing keys, unusable URLs
    ├── EventValidationError          an event is malformed (names the event's index and field)
    ├── SendError                     the server refused or could not take a send
    │   ├── SendRejectedError         4xx: the server's message, never retried
    │   └── SendFailedError           network errors or 5xx after every retry
    ├── StoreError                    the database failed or is in an unexpected state
    │   └── MigrationError            a migration could not be applied
    └── CryptoError                   encryption problems
        ├── UnknownKeyError           a ciphertext names a key id the key ring does not hold
        └── DecryptionError           tampered or corrupt ciphertext

Every error that reaches an HTTP client carries a stable `code` (see `server/responses.py`).
"""

from __future__ import annotations


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


class CryptoError(HeadwaterError):
    code = "crypto_error"


class UnknownKeyError(CryptoError):
    code = "unknown_key"


class DecryptionError(CryptoError):
    code = "decryption_failed"
