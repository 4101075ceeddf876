"""Debian packages, installed with apt-get when something is missing."""

from __future__ import annotations

import os
import shutil

from .progress import PlatformError, run

_updated = False


def install(packages: list[str]) -> None:
    global _updated
    if shutil.which("apt-get") is None:
        raise PlatformError(f"apt-get not available; install {' '.join(packages)} yourself")
    if os.geteuid() != 0:
        raise PlatformError(f"installing {' '.join(packages)} needs root (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        run(["apt-get", "update", "-q"], env=env, timeout=900)
        _updated = True
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env,
        timeout=1800,
    )
