"""Generated passwords: drawn once, kept in the stack's state as secrets.

A Pulumi dynamic provider (docs/decisions/infra.md): ``create`` draws the value
from the operating system's CSPRNG; later updates keep it, because nothing the
program passes changes; a different length draws a new one (replacement). The
value leaves this module only as a Pulumi secret, so the state file holds it
encrypted with the stack's secrets provider and previews never print it.
"""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Any

import pulumi
import pulumi.dynamic

# Letters and digits only: the passwords go into URLs (DATABASE_URL) and SASL
# configuration unescaped. 32 of them are ~190 bits.
ALPHABET = string.ascii_letters + string.digits
DEFAULT_LENGTH = 32
MIN_LENGTH = 16


def generate(length: int) -> str:
    if length < MIN_LENGTH:
        raise ValueError(f"password length: at least {MIN_LENGTH}, got {length}")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class _PasswordProvider(pulumi.dynamic.ResourceProvider):
    # The provider has no settings; nothing captured needs hiding.
    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        length = news.get("length")
        if not isinstance(length, int | float) or int(length) < MIN_LENGTH:
            failures.append(
                pulumi.dynamic.CheckFailure("length", f"an integer of at least {MIN_LENGTH}, got {length!r}")
            )
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        length = int(props["length"])
        return pulumi.dynamic.CreateResult(
            id_=uuid.uuid4().hex, outs={"length": length, "result": generate(length)}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = ["length"] if int(olds.get("length", 0)) != int(news["length"]) else []
        return pulumi.dynamic.DiffResult(changes=bool(replaces), replaces=replaces)


class GeneratedPassword(pulumi.dynamic.Resource, module="emporium", name="GeneratedPassword"):
    """A random password of ``length`` letters and digits; ``result`` is a secret."""

    result: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        length: int = DEFAULT_LENGTH,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            _PasswordProvider(),
            name,
            {"length": length, "result": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])),
        )


TYPE = "pulumi-python:dynamic/emporium:GeneratedPassword"
