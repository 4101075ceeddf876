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
from pathlib import Path

# The package next to this file. Python puts this folder first on sys.path,
# except in isolated mode (`python3 -I`, as the runner's tests call it).
_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.insert(0, _here)

from emporium_platform.cli import main  # type: ignore[import-not-found]  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
