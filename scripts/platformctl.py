#!/usr/bin/env python3
"""Local platform runner: PostgreSQL, Kafka and the services on one machine.

    python3 scripts/platformctl.py start        # install + start PostgreSQL and Kafka
    python3 scripts/platformctl.py provision    # logins, databases, topics
    python3 scripts/platformctl.py env orders   # a service's environment
    python3 scripts/platformctl.py up           # all of it plus every service
    python3 scripts/platformctl.py down

Standard library only. See docs/local-platform.md.
"""

import sys

# This folder is first on sys.path, so the package next to this file imports as is.
from emporium_platform.cli import main  # type: ignore[import-not-found]

if __name__ == "__main__":
    sys.exit(main())
