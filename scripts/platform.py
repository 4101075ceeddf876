#!/usr/bin/env python3
"""Local platform runner: PostgreSQL, Kafka and the services on one machine.

    python3 scripts/platform.py start        # install + start PostgreSQL and Kafka
    python3 scripts/platform.py provision    # logins, databases, topics
    python3 scripts/platform.py env orders   # a service's environment
    python3 scripts/platform.py up           # all of it plus every service
    python3 scripts/platform.py down

Standard library only. See docs/local-platform.md.
"""

import importlib.util
import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# Python put this folder first on sys.path; as this file is called platform.py,
# it would shadow the standard `platform` module for everything imported later.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]


def _load_package():  # type: ignore[no-untyped-def]
    """Imports scripts/emporium_platform as `emporium_platform` (tests do the same)."""
    if "emporium_platform" in sys.modules:
        return sys.modules["emporium_platform"]
    package = _here / "emporium_platform"
    spec = importlib.util.spec_from_file_location(
        "emporium_platform", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["emporium_platform"] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    _load_package()
    from emporium_platform.cli import main  # type: ignore[import-not-found]

    sys.exit(main())
