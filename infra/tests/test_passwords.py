"""The password provider's own logic; the engine runs it for real in tests/live."""

from __future__ import annotations

import pytest

from emporium.infra import passwords

pytestmark = pytest.mark.unit


def test_a_password_is_drawn_from_letters_and_digits_at_the_asked_length() -> None:
    drawn = {passwords.generate(32) for _ in range(50)}
    assert len(drawn) == 50
    assert all(len(p) == 32 and p.isascii() and p.isalnum() for p in drawn)


def test_short_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        passwords.generate(8)
    check = passwords._PasswordProvider().check({}, {"length": 8})
    assert [f.property for f in check.failures] == ["length"]


def test_created_once_then_kept_until_the_length_changes() -> None:
    provider = passwords._PasswordProvider()
    created = provider.create({"length": 24})
    assert len(created.outs["result"]) == 24
    same = provider.diff(created.id, created.outs, {"length": 24})
    assert not same.changes
    longer = provider.diff(created.id, created.outs, {"length": 40})
    assert longer.changes
    assert longer.replaces == ["length"]
