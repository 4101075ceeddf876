"""A local Kubernetes control plane for the chart's cluster tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as
plain processes on 127.0.0.1 (binaries from ``scripts/install-kube.sh``);
KWOK plays the kubelets: it keeps a few fake nodes Ready, one per zone, and
moves the pods scheduled there through their phases (Running and Ready,
Succeeded for a Job's pod). Every run is new: ``cluster-up`` generates a CA,
serving and client certificates, a service-account key and an admin
kubeconfig under ``.run/cluster``; ``cluster-down`` stops the processes and
deletes that directory.

Pod Security ``restricted`` is the cluster-wide default of the admission
plugin (``kube-system`` exempt), as on a production cluster prepared by the
infrastructure. docs/cluster.md says what this proves and what it cannot.

    python3 scripts/platformctl.py cluster-up
    export KUBECONFIG=$(python3 scripts/platformctl.py cluster-kubeconfig)
    python3 scripts/platformctl.py cluster-down
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import PlatformError, note, pid_alive, run, spawn_detached, step, tail, wait_until
from .settings import Settings, read_versions

# Loopback ports below 32768 (outside Linux's ephemeral range), clear of the
# platform's (docs/configuration.md). EMPORIUM_KUBE_*_PORT override them.
DEFAULT_PORTS = {
    "etcd": 22379,
    "etcd_peer": 22380,
    "apiserver": 26443,
    "controller_manager": 20257,
    "scheduler": 20259,
}
# Fake nodes, one per zone, so a spread over zones (prod) can be scheduled.
ZONES = ("zone-a", "zone-b", "zone-c")
NODE_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "250", "ephemeral-storage": "200Gi"}
SERVICE_CIDR = "10.96.0.0/16"
# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
ADMIN_USER = "emporium-admin"
KWOK_STAGES = Path(__file__).resolve().parents[1] / "kube" / "kwok-stages.yaml"


@dataclass(frozen=True)
class Layout:
    """Where the binaries are, where one run keeps its state, which ports it uses."""

    bin_dir: Path
    kubernetes_version: str
    run_dir: Path
    logs_dir: Path
    ports: dict[str, int]

    @classmethod
    def of(cls, s: Settings) -> Layout:
        versions = read_versions()
        version = versions["KUBERNETES_VERSION"]
        ports = {
            name: int(os.environ.get(f"EMPORIUM_KUBE_{name.upper()}_PORT", default))
            for name, default in DEFAULT_PORTS.items()
        }
        return cls(
            bin_dir=s.cache_dir / f"kube-{version}" / "bin",
            kubernetes_version=version,
            run_dir=s.state_dir / "cluster",
            logs_dir=s.logs_dir,
            ports=ports,
        )

    @property
    def pki(self) -> Path:
        return self.run_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def pid_path(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"cluster-{component}.log"


# --- processes ---------------------------------------------------------------


def component_pid(lay: Layout, component: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(lay.pid_path(component).read_text().strip())
        if pid_alive(pid):
            return pid
    return None


def running_components(lay: Layout) -> list[str]:
    return [c for c in COMPONENTS if component_pid(lay, c) is not None]


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _spawn(lay: Layout, component: str, args: list[str]) -> None:
    log = lay.log_path(component)
    log.write_text("")
    pid = spawn_detached([lay.binary(component), *args], log=log, cwd=lay.run_dir, env=os.environ)
    lay.pid_path(component).write_text(f"{pid}\n")


def _wait(lay: Layout, component: str, ready: Any, timeout: float = 60) -> None:
    def check() -> bool:
        if component_pid(lay, component) is None:
            raise PlatformError(
                f"{component} exited; log {lay.log_path(component)}:\n"
                f"{tail(lay.log_path(component))}"
            )
        return bool(ready())

    if not wait_until(check, timeout, interval=0.1):
        raise PlatformError(
            f"{component} not ready after {timeout:.0f}s; log {lay.log_path(component)}:\n"
            f"{tail(lay.log_path(component))}"
        )


# --- certificates and kubeconfigs ----------------------------------------------


def _openssl(*args: str | Path) -> None:
    run(["openssl", *args], timeout=60)


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    path.chmod(0o600)


def _cert(pki: Path, name: str, subject: str, *, server_names: tuple[str, ...] = ()) -> None:
    """A certificate for `name` signed by the run's CA: a client one, or a
    serving one when `server_names` lists its subject alternative names."""
    key, csr, crt, ext = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _key(key)
    _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
    ]
    if server_names:
        lines.append("extendedKeyUsage=serverAuth")
        lines.append("subjectAltName=" + ",".join(server_names))
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key",
        "-CAcreateserial", "-days", "7", "-sha256", "-extfile", ext, "-out", crt,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(lay: Layout, path: Path, user: str, cert: str) -> None:
    """A self-contained kubeconfig (certificates inline); JSON is valid YAML."""
    pki = lay.pki
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "emporium-local",
                "cluster": {
                    "server": lay.server,
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki / f"{cert}.crt"),
                    "client-key-data": _b64(pki / f"{cert}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "emporium-local", "context": {"cluster": "emporium-local", "user": user}}
        ],
        "current-context": "emporium-local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _pki(lay: Layout) -> None:
    pki = lay.pki
    pki.mkdir(mode=0o700, parents=True)
    _key(pki / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", pki / "ca.key", "-subj", "/CN=emporium-local-ca",
        "-days", "7", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", pki / "ca.crt",
    )  # fmt: skip
    _cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        server_names=(
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ),
    )
    _cert(pki, "admin", f"/O=system:masters/CN={ADMIN_USER}")
    _cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    _cert(pki, "scheduler", "/CN=system:kube-scheduler")
    _cert(pki, "kwok", "/O=system:masters/CN=kwok")
    # The key the controller manager signs service-account tokens with.
    _key(pki / "sa.key")
    _openssl("pkey", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub")
    _write_kubeconfig(lay, lay.kubeconfig, ADMIN_USER, "admin")
    for name in ("controller-manager", "scheduler", "kwok"):
        _write_kubeconfig(lay, lay.run_dir / f"{name}.kubeconfig", name, name)


def _admission_config(lay: Layout) -> Path:
    """Pod Security `restricted` for every namespace but kube-system; a namespace
    label can still choose another level, as the infrastructure's node-agent
    namespace does."""
    level = {"enforce": "restricted", "audit": "restricted", "warn": "restricted"}
    config = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {
                "name": "PodSecurity",
                "configuration": {
                    "apiVersion": "pod-security.admission.config.k8s.io/v1",
                    "kind": "PodSecurityConfiguration",
                    "defaults": {
                        **level,
                        **{f"{mode}-version": "latest" for mode in level},
                    },
                    "exemptions": {
                        "usernames": [],
                        "runtimeClasses": [],
                        "namespaces": ["kube-system"],
                    },
                },
            }
        ],
    }
    path = lay.run_dir / "admission.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


# --- the API -----------------------------------------------------------------


def _admin_context(lay: Layout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(lay.pki / "ca.crt"))
    ctx.load_cert_chain(str(lay.pki / "admin.crt"), str(lay.pki / "admin.key"))
    return ctx


def api(lay: Layout, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the API server as the admin; returns the decoded JSON."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        lay.server + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, context=_admin_context(lay), timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text.startswith(("{", "[")) else text


def _api_ready(lay: Layout) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError, ssl.SSLError):
        return api(lay, "GET", "/readyz") == "ok"
    return False


def _healthz(port: int) -> bool:
    """/healthz of a component's self-signed secure port (always allowed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r,
    ):
        return bool(r.read().decode() == "ok")
    return False


def _node(name: str, zone: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": "local",
                "node.kubernetes.io/instance-type": "kwok",
                "type": "kwok",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {},
        "status": {
            "allocatable": NODE_CAPACITY,
            "capacity": NODE_CAPACITY,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def node_names() -> list[str]:
    return [f"kwok-{zone}" for zone in ZONES]


def _nodes_ready(lay: Layout) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
        items = api(lay, "GET", "/api/v1/nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return set(node_names()) <= ready
    return False


def _default_service_account(lay: Layout) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
        api(lay, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return True
    return False


# --- lifecycle -----------------------------------------------------------------


def _require_binaries(lay: Layout) -> None:
    missing = [c for c in COMPONENTS if not lay.binary(c).exists()]
    if missing:
        raise PlatformError(
            f"{', '.join(missing)} missing under {lay.bin_dir}: run `make setup` "
            "(scripts/install-kube.sh builds the control plane once)"
        )


def up(s: Settings) -> Layout:
    """Starts the control plane unless it runs; returns its layout."""
    lay = Layout.of(s)
    s.ensure_dirs()
    alive = running_components(lay)
    if alive == list(COMPONENTS) and _api_ready(lay):
        note(f"cluster: already running at {lay.server}; KUBECONFIG={lay.kubeconfig}")
        return lay
    if alive:
        note(f"cluster: partly running ({', '.join(alive)}); restarting it")
        down(s)
    _require_binaries(lay)
    ports = lay.ports
    busy = [f"{name} :{port}" for name, port in ports.items() if _listening(port)]
    if busy:
        raise PlatformError(f"cluster: ports already in use by another process: {', '.join(busy)}")
    shutil.rmtree(lay.run_dir, ignore_errors=True)
    lay.run_dir.mkdir(mode=0o700, parents=True)
    pki = lay.pki
    started = time.monotonic()

    with step("cluster: certificates, service-account key, kubeconfigs (openssl)"):
        _pki(lay)
        admission = _admission_config(lay)

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    with step(f"cluster: etcd on 127.0.0.1:{ports['etcd']}"):
        peer = f"http://127.0.0.1:{ports['etcd_peer']}"
        _spawn(
            lay,
            "etcd",
            [
                "--name=emporium",
                f"--data-dir={lay.run_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=emporium={peer}",
                # Throw-away data: no fsync, a small database.
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
        )
        _wait(lay, "etcd", lambda: _http_ok(f"{etcd_url}/health"))

    with step(f"cluster: kube-apiserver {lay.kubernetes_version} on {lay.server}"):
        _spawn(
            lay,
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction,PodSecurity,ResourceQuota,LimitRanger",
                f"--admission-control-config-file={admission}",
                # As on a real cluster: Pod Security, not this switch, keeps privileged
                # pods out (kube-system, the one exempt namespace, may run them).
                "--allow-privileged=true",
                # No real node answers on 127.0.0.1: keep the kubernetes Service's
                # endpoints out of it (loopback endpoints are invalid anyway).
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--cert-dir={pki}",
                "--v=1",
            ],
        )
        _wait(lay, "kube-apiserver", lambda: _api_ready(lay), timeout=90)

    with step(f"cluster: kube-controller-manager on 127.0.0.1:{ports['controller_manager']}"):
        kubeconfig = str(lay.run_dir / "controller-manager.kubeconfig")
        _spawn(
            lay,
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['controller_manager']}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
                f"--cert-dir={pki / 'controller-manager'}",
                "--v=1",
            ],
        )

    with step(f"cluster: kube-scheduler on 127.0.0.1:{ports['scheduler']}"):
        kubeconfig = str(lay.run_dir / "scheduler.kubeconfig")
        _spawn(
            lay,
            "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
                f"--cert-dir={pki / 'scheduler'}",
                "--v=1",
            ],
        )

    with step(f"cluster: KWOK with {len(ZONES)} fake nodes in zones {', '.join(ZONES)}"):
        for name, zone in zip(node_names(), ZONES, strict=True):
            api(lay, "POST", "/api/v1/nodes", _node(name, zone))
        _spawn(
            lay,
            "kwok",
            [
                f"--kubeconfig={lay.run_dir / 'kwok.kubeconfig'}",
                "--manage-all-nodes=true",
                # Renew node leases, else the node controller marks them NotReady.
                "--node-lease-duration-seconds=40",
                # How nodes and pods move through their states (and nothing
                # from a user's ~/.kwok).
                f"--config={KWOK_STAGES}",
                # Addresses only written into status; nothing connects to them.
                "--node-ip=127.0.0.1",
                "--cidr=10.0.0.1/16",
            ],
        )

    with step("cluster: controller manager and scheduler healthy, nodes Ready"):
        _wait(lay, "kube-controller-manager", lambda: _healthz(ports["controller_manager"]))
        _wait(lay, "kube-scheduler", lambda: _healthz(ports["scheduler"]))
        _wait(lay, "kwok", lambda: _nodes_ready(lay))
        # The service-account controller is what every namespace's pods need.
        _wait(lay, "kube-controller-manager", lambda: _default_service_account(lay))

    note(f"cluster: ready in {time.monotonic() - started:.1f}s at {lay.server}")
    note(f"cluster: export KUBECONFIG={lay.kubeconfig}")
    return lay


def _http_ok(url: str) -> bool:
    with (
        contextlib.suppress(OSError, urllib.error.URLError, ValueError),
        urllib.request.urlopen(url, timeout=2) as r,
    ):
        return bool(json.loads(r.read()).get("health") == "true")
    return False


def down(s: Settings) -> bool:
    """Stops every component (SIGTERM, SIGKILL after 15 s) and deletes the run's
    state. Returns whether anything ran."""
    lay = Layout.of(s)
    anything = False
    for component in reversed(COMPONENTS):
        pid = component_pid(lay, component)
        if pid is None:
            continue
        anything = True
        with step(f"cluster: stop {component} (pid {pid})"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda p=pid: not pid_alive(p), 15, interval=0.1):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_until(lambda p=pid: not pid_alive(p), 5, interval=0.1)
    shutil.rmtree(lay.run_dir, ignore_errors=True)
    return anything


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def status_rows(s: Settings) -> list[tuple[str, str, str, str]]:
    lay = Layout.of(s)
    where = {
        "etcd": f"127.0.0.1:{lay.ports['etcd']}",
        "kube-apiserver": lay.server,
        "kube-controller-manager": f"127.0.0.1:{lay.ports['controller_manager']}",
        "kube-scheduler": f"127.0.0.1:{lay.ports['scheduler']}",
        "kwok": f"{len(ZONES)} fake nodes",
    }
    rows = []
    for component in COMPONENTS:
        pid = component_pid(lay, component)
        state = f"running {rss_mib(pid):.0f} MiB" if pid else "stopped"
        rows.append((component, where[component], state, str(pid or "-")))
    return rows


def kubeconfig_path(s: Settings) -> Path:
    lay = Layout.of(s)
    if not lay.kubeconfig.exists() or not _api_ready(lay):
        raise PlatformError(
            "the local cluster is not running: python3 scripts/platformctl.py cluster-up"
        )
    return lay.kubeconfig
