"""The limits of Emporium's API, defined once.

The gateway's HTTP validation, the services' gRPC validation, the event
consumers and the limits table of docs/api.md all read these rules, so a
request the gateway accepts is never refused by a service for a limit the
gateway did not know, and both say why in the same words. A test compares the
table in docs/api.md with :func:`markdown_table`.

Each rule returns ``None`` for a good value, or the description of the problem
(``"must be between 1 and 100"``) that goes into a field violation.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One wrong field (the kit's ``FieldViolation`` has the same two attributes)."""

    field: str
    description: str


@dataclass(frozen=True)
class Count:
    """A whole number in ``[minimum, maximum]``."""

    minimum: int
    maximum: int

    def problem(self, value: int) -> str | None:
        if self.minimum <= value <= self.maximum:
            return None
        return f"must be between {self.minimum} and {self.maximum}"

    def rule(self) -> str:
        return f"{self.minimum} to {self.maximum}"


@dataclass(frozen=True)
class Text:
    """A string of ``min_length..max_length`` characters, optionally of a pattern."""

    max_length: int
    min_length: int = 1
    #: None: any printable characters.
    pattern: re.Pattern[str] | None = None
    #: What ``pattern`` allows, for people ("letters, digits, ...").
    alphabet: str = "printable characters"
    ascii_only: bool = False

    def problem(self, value: str) -> str | None:
        if not value:
            return "is required"
        if self.pattern is not None:
            if self.pattern.fullmatch(value) and self.min_length <= len(value) <= self.max_length:
                return None
            return f"must be {self.length()} characters: {self.alphabet}"
        if not self.min_length <= len(value) <= self.max_length:
            return f"must be {self.length()} characters long"
        # isprintable() also refuses lone surrogates, which no UTF-8 string can carry,
        # and NUL, which PostgreSQL text cannot store.
        if not value.isprintable() or (self.ascii_only and not value.isascii()):
            return f"must contain {self.alphabet} only"
        return None

    def length(self) -> str:
        if self.min_length == 1:
            return f"1 to {self.max_length}"
        return f"{self.min_length} to {self.max_length}"

    def rule(self) -> str:
        return f"{self.length()} characters: {self.alphabet}"


@dataclass(frozen=True)
class Uuid:
    """A UUID in any of the forms ``uuid.UUID`` reads."""

    def problem(self, value: str) -> str | None:
        if not value:
            return "is required"
        try:
            uuid.UUID(value)
        except ValueError:
            return "must be a UUID"
        return None

    def rule(self) -> str:
        return "a UUID"


# --- the limits -------------------------------------------------------------------------

#: Product ids are short slugs, e.g. ``pour-over-dripper``.
PRODUCT_ID = Text(
    max_length=64,
    pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"),
    alphabet="letters, digits, '.', '_' or '-', starting with a letter or digit",
)
#: The orders table stores at most 64 characters (a CHECK constraint).
CUSTOMER_ID = Text(max_length=64)
#: Order ids are allocated by orders.
ORDER_ID = Uuid()
#: One per checkout attempt; a UUID is a good key.
IDEMPOTENCY_KEY = Text(
    min_length=8, max_length=128, alphabet="printable ASCII characters", ascii_only=True
)
#: Lines of one order (one line per product).
ORDER_ITEMS = Count(1, 50)
#: Units of one product in one order.
QUANTITY = Count(1, 100)
#: Products per list page; gRPC callers may send 0 for the default.
PAGE_SIZE = Count(1, 100)
DEFAULT_PAGE_SIZE = 20
#: Page tokens are opaque; anything longer is not one the catalog returned.
MAX_PAGE_TOKEN_LENGTH = 512
#: Recommendations per product; gRPC callers may send 0 for the default.
RECOMMENDATIONS = Count(1, 20)
DEFAULT_RECOMMENDATIONS = 4
#: Product ids per BatchGetPrices call.
PRICE_BATCH = Count(1, 100)
#: Money: ISO 4217 code, and an amount in minor units that fits the wire's int64.
CURRENCY_CODE = Text(
    min_length=3, max_length=3, pattern=re.compile(r"[A-Z]{3}"), alphabet="upper-case letters"
)
AMOUNT_MINOR = Count(0, 2**63 - 1)
#: Fraud risk scores.
RISK_SCORE = Count(0, 100)
#: HTTP request bodies larger than this are refused before parsing.
MAX_BODY_BYTES = 64 * 1024

#: Field violations listed in one refusal; the rest are counted ("and 9,979 more").
MAX_LISTED_VIOLATIONS = 20


@dataclass(frozen=True)
class Row:
    """One row of the limits table of docs/api.md."""

    field: str
    where: str
    rule: str


def table() -> list[Row]:
    """The limits as docs/api.md lists them."""
    return [
        Row("`customer_id`", "checkout, events", CUSTOMER_ID.rule()),
        Row("`items`", "checkout, events", f"{ORDER_ITEMS.rule()} lines, one per product"),
        Row("`items[i].product_id`, `product_id`", "checkout, product page", PRODUCT_ID.rule()),
        Row("`items[i].quantity`", "checkout, events", f"a whole number, {QUANTITY.rule()}"),
        Row("`order_id`", "order status, events", ORDER_ID.rule()),
        Row("`Idempotency-Key`", "checkout (header)", IDEMPOTENCY_KEY.rule()),
        Row(
            "`page_size`",
            "product list",
            f"{PAGE_SIZE.rule()}, default {DEFAULT_PAGE_SIZE}",
        ),
        Row("`page_token`", "product list", f"at most {MAX_PAGE_TOKEN_LENGTH} characters"),
        Row(
            "recommendations",
            "product page",
            f"at most {DEFAULT_RECOMMENDATIONS} shown ({RECOMMENDATIONS.maximum} per gRPC call)",
        ),
        Row("request body", "checkout", f"at most {MAX_BODY_BYTES // 1024} KiB"),
        Row(
            "`fields` of a 400",
            "every error",
            f"at most {MAX_LISTED_VIOLATIONS} listed; the message counts the rest",
        ),
    ]


def markdown_table() -> str:
    """The table of :func:`table` in Markdown, as docs/api.md carries it."""
    lines = ["| field | where | rule |", "|---|---|---|"]
    lines += [f"| {row.field} | {row.where} | {row.rule} |" for row in table()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
