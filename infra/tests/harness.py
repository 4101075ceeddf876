"""Run the Pulumi program, or one component, under Pulumi's mocks: no CLI, no
plugins, no cloud. Used by the unit tests and by ``uv run python tests/harness.py
[stack...]`` (in ``infra/``), which prints what each stack would create.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from emporium.infra import passwords
from emporium.infra.settings import CONFIG_NAMESPACE, INFRA_DIR, StackSettings, stack_file

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
REFERENCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
PROJECT = "emporium"


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    # Dotted paths of the inputs that reached the engine as Pulumi secrets.
    secret_paths: set[str] = field(default_factory=set)
    # The provider reference (``urn::id``) the resource was registered with.
    provider: str = ""

    def get(self, path: str, default: Any = None) -> Any:
        value: Any = self.inputs
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value


@dataclass
class Run:
    resources: list[Registered]
    exports: dict[str, Any]
    secret_exports: set[str]

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def custom(self, kind: str) -> list[Registered]:
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]

    def counts(self) -> Counter[str]:
        return Counter(r.type for r in self.resources)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.by_key: dict[tuple[str, str], Registered] = {}
        self.lock = threading.Lock()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Inputs as policies see them: secrets unwrapped (their paths are kept apart).
        registered = Registered(
            args.typ, args.name, _unwrap_secrets(dict(args.inputs)), provider=args.provider or ""
        )
        with self.lock:
            self.resources.append(registered)
            self.by_key[(args.typ, args.name)] = registered
        outputs = dict(args.inputs)
        if args.typ == passwords.TYPE:
            outputs["result"] = f"mock-password-{args.name}"
        elif args.typ.startswith("eks:"):
            # Multi-language components: echoing their inputs back would hand the
            # runtime resource references to resolve; return only what is read.
            outputs = {}
        if args.typ == "eks:index:Cluster":
            outputs.update(
                kubeconfigJson=json.dumps({"apiVersion": "v1", "kind": "Config"}),
                oidcProviderArn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/MOCK",
                oidcProviderUrl="https://oidc.eks.example/id/MOCK",
            )
        elif args.typ.startswith("aws:iam/role:Role"):
            outputs.setdefault("name", args.name)
            outputs["arn"] = f"arn:aws:iam::123456789012:role/{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _Monitor(pulumi_mocks.MockMonitor):
    """Records which inputs were sent as secrets before the mocks unwrap them."""

    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self._recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        # Resource references (an EKS node group's cluster, its IAM roles) are
        # replaced by their URNs: resolving them would start "get" calls on the
        # executor thread's loop, which a later run in this process cannot await.
        raw = json_format.MessageToDict(request.object)
        stripped = _strip_references(raw)
        if stripped != raw:
            request.object.Clear()
            json_format.ParseDict(stripped, request.object)
        response = super().RegisterResource(request)
        registered = self._recording.by_key.get((request.type, request.name))
        if registered is not None:
            raw = json_format.MessageToDict(request.object)
            registered.secret_paths = set(_secret_paths(raw))
        return response


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return _unwrap_secrets(value.get("value"))
        return {key: _unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(item) for item in value]
    return value


def _strip_references(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == REFERENCE_SIG:
            return value.get("urn", "")
        return {key: _strip_references(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_references(item) for item in value]
    return value


def _secret_paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            yield prefix.rstrip(".")
            return
        for key, item in value.items():
            yield from _secret_paths(item, f"{prefix}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, f"{prefix}{index}.")


def stack_config(stack: str) -> dict[str, str]:
    document = yaml.safe_load(stack_file(stack).read_text()) or {}
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in (document.get("config") or {}).items()
        if key.startswith(f"{CONFIG_NAMESPACE}:")
    }


def run(
    program: Callable[[], Any],
    config: dict[str, str] | None = None,
    stack: str = "test",
    secret_keys: list[str] | None = None,
) -> Run:
    """Run ``program`` under fresh mocks and collect what it registered and exported."""
    pulumi_settings.ROOT.set(None)
    # A fresh loop (and so fresh executor threads) per run: resource references
    # resolved by the mock monitor must not meet futures of an earlier run.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=_Monitor(mocks))
    pulumi.runtime.set_all_config(config or {}, secret_keys or [])
    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()

    @pulumi.runtime.test
    def body() -> Any:
        program()
        root = pulumi_settings.get_root_resource()
        outputs: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})

        async def collect() -> None:
            for name, value in outputs.items():
                output = pulumi.Output.from_input(value)
                exports[name] = await output.future()
                if await output.is_secret():
                    secret_exports.add(name)

        return collect()

    body()
    return Run(mocks.resources, exports, secret_exports)


def settings_for(stack: str) -> StackSettings:
    return StackSettings.from_stack_file(stack_file(stack))


def run_stack(stack: str, extra_config: dict[str, str] | None = None) -> Run:
    """Run ``__main__.py`` with the settings of ``Pulumi.<stack>.yaml``."""
    config = {**stack_config(stack), **(extra_config or {})}
    return run(
        lambda: runpy.run_path(str(INFRA_DIR / "__main__.py"), run_name="__main__"),
        config=config,
        stack=stack,
    )


def main() -> None:
    for stack in sys.argv[1:] or ["dev", "staging", "prod"]:
        result = run_stack(stack)
        print(f"{stack}: {len(result.resources)} resources")
        for type_, count in sorted(result.counts().items()):
            print(f"  {count:3d}  {type_}")


if __name__ == "__main__":
    main()
