"""The service image: built with podman from a base made of Debian packages
(no container registry is needed), then the gateway is started from the
image's own filesystem, read-only, as the image's non-root UID, far enough
to answer /livez, and stopped with SIGTERM.

`make setup` builds the image (scripts/build-test-image.sh); this file only
inspects and starts it. Skipped, with the reason, where podman cannot build
(not root, no apt to install it, or no storage driver).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from chartlib import ROOT

from emporium.testing.pytest_plugin import free_port

pytestmark = pytest.mark.integration

SERVICE = "gateway"
IMAGE = f"localhost/emporium-test/{SERVICE}:ci"
UID = 10001


def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def built_image() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip(
            "building and starting the image needs root here (podman with chroot isolation, "
            "a private mount namespace for the read-only root)"
        )
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run make setup")
    if run("podman", "image", "exists", IMAGE).returncode != 0:
        info = run("podman", "info")
        if info.returncode != 0:
            pytest.skip(f"podman cannot build images on this machine: {info.stderr.strip()[-300:]}")
        pytest.fail(f"the image {IMAGE} is not built: run make setup")
    labels = image_config()["Config"]["Labels"]
    revision = labels["org.opencontainers.image.revision"]
    created = labels["org.opencontainers.image.created"]
    print(f"\nimage {IMAGE} (revision {revision}, built {created})")
    return {"revision": revision, "created": created}


@pytest.fixture(scope="module")
def image_root(built_image: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's filesystem, unpacked from `podman export`."""
    root = tmp_path_factory.mktemp("image") / "rootfs"
    root.mkdir()
    container = run("podman", "create", IMAGE).stdout.strip()
    try:
        export = tmp_path_factory.mktemp("export") / "image.tar"
        result = run("podman", "export", "-o", str(export), container)
        assert result.returncode == 0, result.stderr
        with tarfile.open(export) as tar:
            tar.extractall(root, filter="fully_trusted")
        export.unlink()
    finally:
        run("podman", "rm", container)
    return root


def image_config() -> dict:
    result = run("podman", "image", "inspect", IMAGE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_image_metadata(
    built_image: dict[str, str], record_property: pytest.RecordProperty
) -> None:
    config = image_config()
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert config["Config"]["Entrypoint"] == ["/app/venv/bin/emporium-service"]
    labels = config["Config"]["Labels"]
    for key in ("title", "version", "revision", "created", "description"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["org.opencontainers.image.title"] == f"emporium-{SERVICE}"
    size_mb = config["Size"] / 1e6
    record_property("image_size_mb", round(size_mb, 1))
    print(f"{IMAGE}: {size_mb:.1f} MB")
    assert size_mb < 400


def test_final_stage_has_no_build_tools(image_root: Path) -> None:
    assert not (image_root / "opt" / "uv").exists(), "uv belongs to the build stage only"
    assert not (image_root / "src").exists(), "no source tree in the image"
    bin_dir = image_root / "app" / "venv" / "bin"
    assert (bin_dir / f"emporium-{SERVICE}").exists()
    assert not list(bin_dir.glob("pip*"))
    assert not (bin_dir / "uv").exists()
    for tool in ("gcc", "cc", "make", "g++"):
        assert not (image_root / "usr" / "bin" / tool).exists(), tool
    # Only this service's code is installed, not the other services'.
    dists = {
        p.name.split("-")[0]
        for p in (image_root / "app" / "venv").glob(
            "lib/python3*/site-packages/emporium_*.dist-info"
        )
    }
    assert dists == {"emporium_kit", "emporium_contracts", f"emporium_{SERVICE}"}
    # Bytecode was compiled at build time: nothing to write at run time.
    assert list(
        (image_root / "app" / "venv").glob(
            f"lib/python3*/site-packages/emporium/{SERVICE}/__pycache__/*.pyc"
        )
    )


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


START_SCRIPT = r"""
set -e
fs=$1; shift
mount --bind "$fs" "$fs"
mount -o remount,bind,ro "$fs"
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$fs/tmp"
mount --rbind /dev "$fs/dev"
mount --rbind /proc "$fs/proc"
exec chroot --userspec=$UID_GID "$fs" /usr/bin/env -i "$@"
"""


def test_gateway_starts_from_the_image_and_answers_livez(image_root: Path, tmp_path: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        pytest.skip(
            "unshare and chroot (util-linux, coreutils) are needed to start the image's filesystem"
        )
    config = image_config()["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
    env.update(
        {
            "BIND_HOST": "127.0.0.1",
            "GRPC_PORT": str(grpc_port),
            "ADMIN_PORT": str(admin_port),
            "HTTP_PORT": str(http_port),
            "SHUTDOWN_GRACE_SECONDS": "5",
            # Valid addresses where nothing listens: /livez must not care.
            "CATALOG_ADDR": "127.0.0.1:9",
            "RECOMMENDATIONS_ADDR": "127.0.0.1:9",
            "ORDERS_ADDR": "127.0.0.1:9",
        }
    )
    script = tmp_path / "start.sh"
    script.write_text(START_SCRIPT)
    log = (tmp_path / "service.log").open("w+")
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        str(script),
        str(image_root),
        *[f"{k}={v}" for k, v in env.items()],
        *config["Entrypoint"],
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "UID_GID": f"{UID}:{UID}"}
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            status = http_status(f"http://127.0.0.1:{admin_port}/livez")
            if status == 200:
                break
            time.sleep(0.5)
        log.seek(0)
        output = log.read()
        assert status == 200, (
            f"/livez answered {status}; exit {process.poll()}; log:\n{output[-3000:]}"
        )
        # Truthful readiness: the catalog is unreachable, so not ready.
        assert http_status(f"http://127.0.0.1:{admin_port}/readyz") == 503
        # It runs as the image's user, on a read-only root filesystem.
        pids = subprocess.run(
            ["pgrep", "-f", "emporium-service", "-P", str(process.pid)],
            capture_output=True,
            text=True,
        ).stdout.split()
        for pid in pids or [str(process.pid)]:
            status_text = Path(f"/proc/{pid}/status").read_text()
            uid_line = re.search(r"^Uid:\s+(\d+)", status_text, flags=re.MULTILINE)
            assert uid_line
            assert int(uid_line.group(1)) == UID
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "SIGTERM must drain and exit 0"
        log.seek(0)
        lines = [json.loads(line) for line in log.read().splitlines() if line.startswith("{")]
        assert lines
        assert all(line.get("service") == SERVICE for line in lines), "JSON logs on stdout"
        assert not any("Read-only file system" in line.get("message", "") for line in lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()
