"""Errors that handlers raise and that the edges map to gRPC or HTTP status.

Domain code raises these plain exceptions; the gRPC server interceptor turns
them into a status with details, the gateway into an HTTP status with a JSON
body, and the client turns a downstream's status back into the same classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class NamedProblem(Protocol):
    """Anything that names a field and what is wrong with it (a contracts ``Violation``)."""

    @property
    def field(self) -> str: ...

    @property
    def description(self) -> str: ...


class ServiceError(Exception):
    """Base of the errors that have a defined status."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    #: Business errors mean the request was understood and refused; they never
    #: count as a failure of the callee (breakers ignore them).
    business: bool = False
    #: False when the call never left this process (the client's breaker was
    #: open, or no time was left for it): the callee did nothing, so there is
    #: nothing to compensate. True whenever it may have reached the callee.
    sent: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


#: A refusal lists at most this many field violations (in the gRPC BadRequest
#: detail, the HTTP 400's ``fields`` and the message); the message counts the
#: rest. A cart of 10,000 bad lines gets an answer of a few hundred bytes.
MAX_LISTED_VIOLATIONS = 20


def describe_violations(violations: Sequence[NamedProblem]) -> str:
    """``"items[0].quantity: must be ...; ...; and 9,979 more"``, listing at most 20."""
    listed = "; ".join(f"{v.field}: {v.description}" for v in violations[:MAX_LISTED_VIOLATIONS])
    unlisted = len(violations) - MAX_LISTED_VIOLATIONS
    return f"{listed}; and {unlisted:,} more" if unlisted > 0 else listed


class InvalidArgument(ServiceError):
    """A request (or event) that can never succeed as sent; names the fields.

    ``violations`` keeps the first :data:`MAX_LISTED_VIOLATIONS`; ``unlisted``
    is how many more there were.
    """

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    business = True

    def __init__(
        self, violations: Sequence[NamedProblem] | dict[str, str], message: str = ""
    ) -> None:
        if isinstance(violations, dict):
            violations = [FieldViolation(f, d) for f, d in violations.items()]
        self.violations = [
            FieldViolation(v.field, v.description) for v in violations[:MAX_LISTED_VIOLATIONS]
        ]
        self.unlisted = max(0, len(violations) - MAX_LISTED_VIOLATIONS)
        super().__init__(message or f"invalid request: {describe_violations(violations)}")


class NotFound(ServiceError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    business = True


class FailedPrecondition(ServiceError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    business = True


class AlreadyExists(ServiceError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    business = True


class Unavailable(ServiceError):
    """A dependency cannot be reached (down, breaker open, or too slow)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503

    def __init__(self, message: str, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency


class DeadlineExceeded(ServiceError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504

    def __init__(self, message: str, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency


#: Status codes that say "the callee refused this request", not "the callee failed".
BUSINESS_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
