#!/usr/bin/env python3
"""Local platform runner: PostgreSQL, Kafka and the services on one machine.

    python3 scripts/platform.py start        # install + start PostgreSQL and Kafka
    python3 scripts/platform.py provision    # logins, databases, topics
    python3 scripts/platform.py env orders   # a service's environment
    python3 scripts/platform.py up           # all of it plus every service
    python3 scripts/platform.py down

Standard library only. See docs/local-platform.md.
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# Python put this folder first on sys.path; as this file is called platform.py,
# it would shadow the standard `platform` module. Import the package from the
# repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))

from scripts.emporium_platform.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
