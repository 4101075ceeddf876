"""Fixtures of the chart tests.

The helpers live in chartlib.py; this file registers that module under the
name `chartlib` (the tests run in importlib mode, which puts no test folder
on sys.path) so every test module can `import chartlib`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

if "chartlib" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "chartlib", Path(__file__).with_name("chartlib.py")
    )
    assert _spec
    assert _spec.loader
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["chartlib"] = _module
    _spec.loader.exec_module(_module)

import chartlib


@pytest.fixture(params=chartlib.ALL_SCENARIOS)
def any_scenario(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=chartlib.ENVIRONMENTS)
def environment(request: pytest.FixtureRequest) -> str:
    return request.param
