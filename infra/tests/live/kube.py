"""A small Kubernetes API client for the live tests: what the tests read back
from the API server and the CRDs they install, over HTTPS with the kubeconfig's
client certificate. No cluster tool is needed besides the API server."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class KubeError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.context_name: str = name
        self.server: str = cluster["server"].rstrip("/")
        self._ssl = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        # ssl loads a client certificate only from files.
        with tempfile.TemporaryDirectory() as scratch:
            cert, key = Path(scratch, "client.crt"), Path(scratch, "client.key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.touch(mode=0o600)
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            self._ssl.load_cert_chain(str(cert), str(key))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Any:
        url = self.server + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise KubeError(error.code, method, path, error.read().decode(errors="replace")) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def find(self, path: str) -> Any | None:
        """The object at ``path``, or None when the API server has none."""
        try:
            return self.get(path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def items(self, path: str) -> list[dict[str, Any]]:
        return list(self.get(path)["items"])

    def apply(self, path: str, manifest: dict[str, Any], manager: str) -> Any:
        """Server-side apply of one object at its path (forced: the test owns it)."""
        return self.request(
            "PATCH",
            path,
            manifest,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": manager, "force": "true"},
        )

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except KubeError as error:
            if error.status != 404:
                raise

    def wait_for(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.5)


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def load_documents(files: Iterable[Path]) -> list[dict[str, Any]]:
    return [doc for file in files for doc in yaml.safe_load_all(file.read_text()) if doc]


def install_crds(kube: Kube, crds: list[dict[str, Any]], manager: str) -> list[str]:
    """Apply the CRDs and wait until the API server serves each of them."""
    names = []
    for crd in crds:
        name = crd["metadata"]["name"]
        kube.apply(f"{CRD_PATH}/{name}", crd, manager)
        names.append(name)
    for name in names:
        kube.wait_for(f"CRD {name} to be established", lambda n=name: _established(kube, n))
    return names


def _established(kube: Kube, name: str) -> bool:
    conditions = (kube.get(f"{CRD_PATH}/{name}").get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
