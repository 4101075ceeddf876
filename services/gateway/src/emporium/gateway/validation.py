"""Request validation: turns query strings, headers and JSON bodies into values.

Every problem becomes an :class:`~emporium.kit.errors.InvalidArgument` naming
the field (``items[1].quantity``), so a client learns everything that is wrong
with a request in one answer and never gets a 500 for bad input. The limits
are the contracts' (``emporium.contracts.limits``), the same the services
enforce, so what passes here is never refused downstream for a limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from emporium.contracts import limits
from emporium.gateway.domain import CheckoutRequest, OrderLine
from emporium.kit.errors import FieldViolation, InvalidArgument

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: Request bodies larger than this are refused before parsing.
MAX_BODY_BYTES = limits.MAX_BODY_BYTES


class MalformedBody(InvalidArgument):
    """The body is not JSON at all (as opposed to JSON with wrong fields)."""

    def __init__(self, message: str) -> None:
        super().__init__([], message)


def page_query(query: Mapping[str, str]) -> tuple[int, str]:
    """``page_size`` (1..100, default 20) and ``page_token`` of a list request."""
    problems: list[FieldViolation] = []
    page_size = limits.DEFAULT_PAGE_SIZE
    raw_size = query.get("page_size")
    if raw_size is not None and raw_size != "":
        try:
            page_size = int(raw_size)
        except ValueError:
            problems.append(
                FieldViolation("page_size", f"must be a whole number, got {raw_size[:20]!r}")
            )
        else:
            if problem := limits.PAGE_SIZE.problem(page_size):
                problems.append(FieldViolation("page_size", problem))
    page_token = query.get("page_token", "")
    if len(page_token) > limits.MAX_PAGE_TOKEN_LENGTH:
        problems.append(
            FieldViolation(
                "page_token", f"must be at most {limits.MAX_PAGE_TOKEN_LENGTH} characters"
            )
        )
    if problems:
        raise InvalidArgument(problems)
    return page_size, page_token


def product_id(value: str) -> str:
    """A product id taken from the path."""
    if problem := limits.PRODUCT_ID.problem(value):
        raise InvalidArgument({"product_id": problem})
    return value


def order_id(value: str) -> str:
    """An order id taken from the path."""
    if problem := limits.ORDER_ID.problem(value):
        raise InvalidArgument({"order_id": problem})
    return value


def idempotency_key(headers: Mapping[str, str]) -> str:
    key = headers.get(IDEMPOTENCY_KEY_HEADER)
    field = IDEMPOTENCY_KEY_HEADER
    if key is None or not key.strip():
        raise InvalidArgument(
            {field: "header is required: a unique key per checkout attempt, reused on retry"}
        )
    key = key.strip()
    if problem := limits.IDEMPOTENCY_KEY.problem(key):
        raise InvalidArgument({field: problem})
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
    customer_id = _text(document, "customer_id", "customer_id", limits.CUSTOMER_ID, problems)
    items: list[OrderLine] = []
    raw_items = document.get("items")
    if raw_items is None:
        problems.append(FieldViolation("items", "is required"))
    elif not isinstance(raw_items, list):
        problems.append(FieldViolation("items", f"must be an array, not {_kind(raw_items)}"))
    elif limits.ORDER_ITEMS.problem(len(raw_items)):
        problems.append(
            FieldViolation(
                "items", f"must contain {limits.ORDER_ITEMS.rule()} items, got {len(raw_items)}"
            )
        )
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
    product_id = _text(raw, "product_id", f"{path}.product_id", limits.PRODUCT_ID, problems)
    quantity = raw.get("quantity")
    field = f"{path}.quantity"
    if quantity is None:
        problems.append(FieldViolation(field, "is required"))
        return None
    # JSON has one number type: 2.0 is accepted as 2, 2.5 and true are not.
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        problems.append(FieldViolation(field, f"must be a whole number, got {_shown(quantity)}"))
        return None
    if problem := limits.QUANTITY.problem(quantity):
        problems.append(FieldViolation(field, problem))
        return None
    if product_id is None:
        return None
    return OrderLine(product_id=product_id, quantity=quantity)


def _text(
    document: dict[str, Any],
    key: str,
    field: str,
    rule: limits.Text,
    problems: list[FieldViolation],
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
    # The rule also refuses lone surrogates, which no UTF-8 (protobuf) string can carry.
    if problem := rule.problem(value):
        problems.append(FieldViolation(field, problem))
        return None
    return value


def _shown(value: Any) -> str:
    """A short JSON rendering of a scalar, or its kind: ``2.5``, ``"2"``, ``true``, an array."""
    if isinstance(value, list | dict):
        return _kind(value)
    shown = json.dumps(value)
    return shown if len(shown) <= 24 else shown[:20] + "..."


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
