"""Request validation: turns query strings, headers and JSON bodies into values.

Every problem becomes an :class:`~emporium.kit.errors.InvalidArgument` naming
the field (``items[1].quantity``), so a client learns everything that is wrong
with a request in one answer and never gets a 500 for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from emporium.gateway.model import CheckoutRequest, OrderLine
from emporium.kit.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE_TOKEN_LENGTH = 512
MAX_ID_LENGTH = 128
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MIN_LENGTH = 8
IDEMPOTENCY_KEY_MAX_LENGTH = 128
MAX_ITEMS = 50
MAX_QUANTITY = 1000
#: Request bodies larger than this are refused before parsing.
MAX_BODY_BYTES = 64 * 1024


class MalformedBody(InvalidArgument):
    """The body is not JSON at all (as opposed to JSON with wrong fields)."""

    def __init__(self, message: str) -> None:
        super().__init__([], message)


def page_query(query: Mapping[str, str]) -> tuple[int, str]:
    """``page_size`` (1..100, default 20) and ``page_token`` of a list request."""
    problems: list[FieldViolation] = []
    page_size = DEFAULT_PAGE_SIZE
    raw_size = query.get("page_size")
    if raw_size is not None and raw_size != "":
        try:
            page_size = int(raw_size)
        except ValueError:
            problems.append(FieldViolation("page_size", "must be a whole number"))
        else:
            if not 1 <= page_size <= MAX_PAGE_SIZE:
                problems.append(
                    FieldViolation("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
                )
    page_token = query.get("page_token", "")
    if len(page_token) > MAX_PAGE_TOKEN_LENGTH:
        problems.append(
            FieldViolation("page_token", f"must be at most {MAX_PAGE_TOKEN_LENGTH} characters")
        )
    if problems:
        raise InvalidArgument(problems)
    return page_size, page_token


def resource_id(value: str, field: str) -> str:
    """A product or order id taken from the path."""
    if not value.strip():
        raise InvalidArgument({field: "must not be empty"})
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument({field: f"must be at most {MAX_ID_LENGTH} characters"})
    if not value.isprintable():
        raise InvalidArgument({field: "must contain printable characters only"})
    return value


def idempotency_key(headers: Mapping[str, str]) -> str:
    key = headers.get(IDEMPOTENCY_KEY_HEADER)
    field = IDEMPOTENCY_KEY_HEADER
    if key is None or not key.strip():
        raise InvalidArgument(
            {field: "header is required: a unique key per checkout attempt, reused on retry"}
        )
    key = key.strip()
    if not IDEMPOTENCY_KEY_MIN_LENGTH <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidArgument(
            {
                field: f"must be {IDEMPOTENCY_KEY_MIN_LENGTH} to "
                f"{IDEMPOTENCY_KEY_MAX_LENGTH} characters long"
            }
        )
    if not (key.isascii() and key.isprintable()):
        raise InvalidArgument({field: "must contain printable ASCII characters only"})
    return key


def json_body(body: bytes) -> Any:
    """Parses a JSON request body or says, for a person, why it is not JSON."""
    if not body.strip():
        raise MalformedBody("request body is empty; expected a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise MalformedBody("request body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise MalformedBody(
            f"request body is not valid JSON: {error.msg} "
            f"(line {error.lineno}, column {error.colno})"
        ) from None
    except ValueError:  # an integer longer than Python converts (sys.int_info)
        raise MalformedBody("request body has a number with too many digits") from None
    except RecursionError:
        raise MalformedBody("request body is nested too deeply") from None


def checkout_request(key: str, document: Any) -> CheckoutRequest:
    """``{"customer_id": "...", "items": [{"product_id": "...", "quantity": 1}]}``."""
    if not isinstance(document, dict):
        raise InvalidArgument({"body": f"must be a JSON object, not {_kind(document)}"})
    problems: list[FieldViolation] = []
    customer_id = _text(document, "customer_id", "customer_id", problems)
    items: list[OrderLine] = []
    raw_items = document.get("items")
    if raw_items is None:
        problems.append(FieldViolation("items", "is required"))
    elif not isinstance(raw_items, list):
        problems.append(FieldViolation("items", f"must be an array, not {_kind(raw_items)}"))
    elif not raw_items:
        problems.append(FieldViolation("items", "must contain at least one item"))
    elif len(raw_items) > MAX_ITEMS:
        problems.append(FieldViolation("items", f"must contain at most {MAX_ITEMS} items"))
    else:
        for index, raw in enumerate(raw_items):
            line = _order_line(raw, f"items[{index}]", problems)
            if line is not None:
                items.append(line)
    if problems:
        raise InvalidArgument(problems)
    assert customer_id is not None
    return CheckoutRequest(idempotency_key=key, customer_id=customer_id, items=items)


def _order_line(raw: Any, path: str, problems: list[FieldViolation]) -> OrderLine | None:
    if not isinstance(raw, dict):
        problems.append(FieldViolation(path, f"must be an object, not {_kind(raw)}"))
        return None
    product_id = _text(raw, "product_id", f"{path}.product_id", problems)
    quantity = raw.get("quantity")
    field = f"{path}.quantity"
    if quantity is None:
        problems.append(FieldViolation(field, "is required"))
        return None
    # JSON has one number type: 2.0 is accepted as 2, 2.5 and true are not.
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        problems.append(FieldViolation(field, f"must be a whole number, not {_kind(quantity)}"))
        return None
    if not 1 <= quantity <= MAX_QUANTITY:
        problems.append(FieldViolation(field, f"must be between 1 and {MAX_QUANTITY}"))
        return None
    if product_id is None:
        return None
    return OrderLine(product_id=product_id, quantity=quantity)


def _text(
    document: dict[str, Any], key: str, field: str, problems: list[FieldViolation]
) -> str | None:
    value = document.get(key)
    if value is None:
        problems.append(FieldViolation(field, "is required"))
        return None
    if not isinstance(value, str):
        problems.append(FieldViolation(field, f"must be a string, not {_kind(value)}"))
        return None
    value = value.strip()
    if not value:
        problems.append(FieldViolation(field, "must not be empty"))
        return None
    # Also refuses lone surrogates, which no UTF-8 (protobuf) string can carry.
    if not value.isprintable():
        problems.append(FieldViolation(field, "must contain printable characters only"))
        return None
    if len(value) > MAX_ID_LENGTH:
        problems.append(FieldViolation(field, f"must be at most {MAX_ID_LENGTH} characters"))
        return None
    return value


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
