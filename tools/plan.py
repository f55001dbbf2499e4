"""The offline plan: run the Pulumi program in-process against mocks, with no Pulumi CLI, no Docker and
no cloud credentials, and report every resource it would register with its inputs.

    python -m tools.plan --stack prod [--format table|json] [--out DIR]

Secrets never appear: every value Pulumi marks secret is printed as "[secret]", and values that the
stack file keeps encrypted (`secure:`) are never decrypted (they are replaced before the program runs).
Computed values (ids, generated passwords, certificates) are deterministic stand-ins, so two plans of
the same configuration are identical and can be diffed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pulumi
import pulumi.runtime.resource
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime.proto import resource_pb2, source_pb2

from components.container import LABEL_PREFIX, SECRET_PERMISSIONS
from model.loading import SETTINGS_KEY, ConfigError, load_settings
from model.settings import Settings
from model.tuning import container_budget

ROOT = Path(__file__).resolve().parent.parent
SECRET = "[secret]"
STACKS = ("dev", "staging", "prod")
CONTAINER = "docker:index/container:Container"


@dataclass
class PlannedResource:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    # The resource option the e2e applier follows on a replacement (not part of the plan's JSON).
    delete_before_replace: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "resources": [resource.as_json() for resource in self.resources],
            "outputs": self.outputs,
            "budget": self.budget,
        }

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [resource for resource in self.resources if resource.type == type_]

    def named(self, type_: str, name: str) -> PlannedResource:
        matches = [resource for resource in self.of_type(type_) if resource.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources of type {type_} named {name}")
        return matches[0]


def redact(value: Any) -> Any:
    """Replace every Pulumi secret inside `value` by "[secret]"."""
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def redact_container(inputs: dict[str, Any]) -> dict[str, Any]:
    """Pulumi marks a container's whole `envs` or `uploads` list secret when one entry is. Show the
    entries that are not: env names listed in the secret-env label and uploads with the secret file
    mode keep their values hidden; everything else secret stays "[secret]"."""
    labels = {label["label"]: label["value"] for label in inputs.get("labels", [])}
    secret_env = set(labels.get(f"{LABEL_PREFIX}.secret-env", "").split(","))
    shown = dict(inputs)
    if rpc.is_rpc_secret(inputs.get("envs")):
        shown["envs"] = [
            f"{entry.split('=', 1)[0]}={SECRET}" if entry.split("=", 1)[0] in secret_env else entry
            for entry in rpc.unwrap_rpc_secret(inputs["envs"])
        ]
    if rpc.is_rpc_secret(inputs.get("uploads")):
        shown["uploads"] = [
            {**upload, "content": SECRET} if upload.get("permissions") == SECRET_PERMISSIONS else upload
            for upload in rpc.unwrap_rpc_secret(inputs["uploads"])
        ]
    redacted: dict[str, Any] = redact(shown)
    return redacted


def _stand_in(kind: str, name: str) -> str:
    return f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


_FAKE_PEM = "-----BEGIN {0}-----\nUExBTi1PTkxZ\n-----END {0}-----\n"


def computed_outputs(type_: str, name: str) -> dict[str, Any]:
    """Deterministic stand-ins for what a provider would compute."""
    if type_ == "random:index/randomPassword:RandomPassword":
        return {"result": _stand_in("pw", name)}
    if type_ == "random:index/randomBytes:RandomBytes":
        return {"base64": "c3RhbmQtaW4tc2FsdC0xNg==", "hex": "7374616e642d696e2d73616c742d3136"}
    if type_ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": _FAKE_PEM.format("PRIVATE KEY"), "publicKeyPem": _FAKE_PEM.format("PUBLIC KEY")}
    if type_ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        return {"certPem": _FAKE_PEM.format("CERTIFICATE")}
    if type_ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _FAKE_PEM.format("CERTIFICATE REQUEST")}
    if type_ == "docker:index/remoteImage:RemoteImage":
        return {"imageId": f"sha256:{hashlib.sha256(name.encode()).hexdigest()}"}
    if type_ == "aws:s3/bucket:Bucket":
        bucket = f"stories-backup-{name}"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    if type_ == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::000000000000:role/{name}"}
    if type_ == "aws:iam/accessKey:AccessKey":
        return {"secret": _stand_in("key", name)}
    return {}


def mock_id(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """A container's id stands for its inputs (a changed container is a new one, with a new id: what the
    provider does, since nearly every input forces a replacement); other ids stand for the name only."""
    if type_ != CONTAINER:
        return f"{name}-id"
    digest = hashlib.sha256(json.dumps(reveal(inputs), sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}-{digest[:12]}"


class PlanMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return mock_id(args.typ, args.name, dict(args.inputs)), {**args.inputs, **computed_outputs(args.typ, args.name)}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def reveal(value: Any) -> Any:
    """Every Pulumi secret inside `value` unwrapped: for a program that applies the plan (the e2e stack)."""
    if rpc.is_rpc_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


class RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, remembering each registration with its parent's name, in order (the order
    respects dependencies: a resource registers once the outputs it takes have resolved).

    It answers a registration with what the mocks computed (ids, passwords, certificates) and nothing
    else: outside a preview the runtime keeps, for every output the answer leaves out, the input it sent,
    so echoing the inputs back (what the stock mock monitor does) would only serialize and parse each
    resource's inputs, config file contents included, once more. Mocks compute plain JSON values."""

    def __init__(self, mocks_impl: pulumi.runtime.Mocks, revealed: bool = False) -> None:
        super().__init__(mocks_impl)
        self.recorded: list[PlannedResource] = []
        self.revealed = revealed

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)  # type: ignore[no-untyped-call]
        raw = rpc.deserialize_properties(request.object)
        self.recorded.append(
            PlannedResource(
                request.type,
                request.name,
                _parent_name(request.parent),
                self.shown(request.type, raw),
                bool(request.deleteBeforeReplace),
            )
        )
        urn = self.make_urn(request.parent, request.type, request.name)
        args = pulumi.runtime.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=raw,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        resource_id, state = self.mocks.new_resource(args)
        self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, resource_id or "", state)
        response = resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id or "")
        response.object.update({key: value for key, value in state.items() if key not in raw or raw[key] is not value})
        return response

    def shown(self, type_: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs as recorded: secrets "[secret]", or in the clear when `revealed`."""
        if self.revealed:
            revealed: dict[str, Any] = reveal(inputs)
            return revealed
        return redact_container(inputs) if type_ == CONTAINER else redact(inputs)


def _parent_name(parent_urn: str) -> str | None:
    """The parent's name, or None for the stack itself (a URN ends in `::<type chain>::<name>`)."""
    if not parent_urn:
        return None
    type_chain, name = parent_urn.split("::")[-2:]
    return None if type_chain == "pulumi:pulumi:Stack" else name


def _placeholder_secure(value: Any) -> tuple[Any, bool]:
    """Replace `{secure: ciphertext}` leaves by "[secret]"; report whether any was found."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET, True
        found = False
        replaced = {}
        for key, item in value.items():
            replaced[key], inner = _placeholder_secure(item)
            found = found or inner
        return replaced, found
    if isinstance(value, list):
        items = [_placeholder_secure(item) for item in value]
        return [item for item, _ in items], any(inner for _, inner in items)
    return value, False


def _load_yaml(text: str) -> Any:
    """yaml.safe_load, with libyaml's parser where PyYAML has it (the same documents, 7x faster)."""
    return yaml.load(text, Loader=yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


def project_name() -> str:
    return str(_load_yaml((ROOT / "Pulumi.yaml").read_text())["name"])


def stack_config(stack: str, root: Path = ROOT) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the Pulumi engine hands it to a program: key -> JSON text."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise ConfigError([])  # handled by the caller with a message naming the file
    document = _load_yaml(path.read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        replaced, is_secret = _placeholder_secure(value)
        config[key] = replaced if isinstance(replaced, str) else json.dumps(replaced, default=str)
        if is_secret:
            secret_keys.append(key)
    return config, secret_keys


def run_plan(stack: str, config: Mapping[str, str] | None = None, secret_keys: list[str] | None = None) -> Plan:
    """Run the program against mocks. `config` defaults to the stack file's."""
    if config is None:
        config, secret_keys = stack_config(stack)
    resources, outputs = run_program(stack, PlanMocks(), config, secret_keys)
    # Registration order depends on when outputs resolve; sort so that equal plans print equally.
    ordered = sorted(resources, key=lambda r: (r.parent or "", r.type, r.name))
    settings = settings_of(config)
    return Plan(stack, ordered, outputs, host_budget(settings) if settings.target == "docker" else {})


_P = ParamSpec("_P")
_T = TypeVar("_T")


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """While `inline`, runs each call at once on the calling thread. The runtime hands every request
    to the monitor to the event loop's default executor, and a hop to a worker thread and back costs
    more than the mock monitor's answer; afterwards it is an ordinary thread pool."""

    inline = True

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> concurrent.futures.Future[_T]:
        if not self.inline:
            return super().submit(fn, *args, **kwargs)
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed to the awaiting coroutine, as a worker thread would
            future.set_exception(error)
        return future


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


@contextmanager
def _plan_runtime() -> Iterator[None]:
    """What a registration costs that the plan does not need, switched off for the run and restored:
    - the cyclic garbage collector: the runtime makes tens of thousands of short-lived futures, tasks
      and Outputs, and each collection walks every long-lived object of the SDKs as well (a plan peaks
      near 100 MB either way);
    - the Python stack the runtime captures for each resource (traceback.extract_stack and a file URI
      per frame), which only an engine shows: the mock monitor drops it."""
    collecting = gc.isenabled()
    gc.disable()
    runtime: Any = pulumi.runtime.resource
    stack_trace = getattr(runtime, "_get_stack_trace", None)
    if stack_trace is not None:
        runtime._get_stack_trace = _no_stack_trace
    try:
        yield
    finally:
        if stack_trace is not None:
            runtime._get_stack_trace = stack_trace
        if collecting:
            gc.enable()


def run_program(
    stack: str,
    mocks_impl: pulumi.runtime.Mocks,
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
    revealed: bool = False,
) -> tuple[list[PlannedResource], dict[str, Any]]:
    """The resources the program registers, in registration order, and its outputs. `revealed` keeps
    secrets in the clear (for applying the plan); otherwise they are "[secret]"."""
    from components.program import build

    if config is None:
        config, secret_keys = stack_config(stack)
    pulumi.runtime.set_all_config(dict(config), secret_keys or [])
    monitor = RecordingMonitor(mocks_impl, revealed)
    pulumi.runtime.set_mocks(mocks_impl, project=project_name(), stack=stack, preview=False, monitor=monitor)
    outputs: dict[str, Any] = {}
    executor = _InlineExecutor()

    async def collect_outputs(program_outputs: Mapping[str, pulumi.Input[Any]]) -> None:
        for key, value in program_outputs.items():
            output = pulumi.Output.from_input(value)
            resolved = await output.future()
            if revealed:
                outputs[key] = resolved
            else:
                outputs[key] = SECRET if await output.is_secret() else redact(resolved)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[None]:
        asyncio.get_running_loop().set_default_executor(executor)
        return pulumi.Output.from_input(asyncio.ensure_future(collect_outputs(build())))

    with _plan_runtime():
        try:
            program()
        finally:
            executor.inline = False
    return monitor.recorded, outputs


def settings_of(config: Mapping[str, str]) -> Settings:
    """The validated settings in a stack's config (as `stack_config` returns it)."""
    project = project_name()
    raw_secrets = json.loads(config.get(f"{project}:secrets", "{}"))
    return load_settings(json.loads(config.get(f"{project}:{SETTINGS_KEY}", "null")), set(raw_secrets))


def settings_for(stack: str) -> Any:
    config, _ = stack_config(stack)
    return settings_of(config)


def host_budget(settings: Settings) -> dict[str, Any]:
    """What the stack's containers ask of the host (`container_budget`: the app at maxReplicas; config
    containers are created but never started, so they count nothing): the sums of memory reservations,
    of memory limits and of cpus, each against the host's (`host.memoryMb`, `host.cpus`) with the
    headroom left in percent of it (negative: more than the host has)."""
    budget = container_budget(settings).values()
    reserved = sum(each.resources.memory_reservation_mb * each.count for each in budget)
    limits = sum(each.resources.memory_mb * each.count for each in budget)
    cpus = round(math.fsum(each.resources.cpus * each.count for each in budget), 3)
    return {
        "containers": sum(each.count for each in budget),
        "appReplicas": settings.app.max_replicas,
        "memoryReservationMb": _against(reserved, settings.host.memory_mb),
        "memoryMb": _against(limits, settings.host.memory_mb),
        "cpus": _against(cpus, settings.host.cpus),
    }


def _against(used: float, host: float) -> dict[str, Any]:
    return {"used": used, "host": host, "headroomPercent": round((host - used) * 100 / host, 1)}


# ---------------------------------------------------------------------------------------------------
# Command line


def _container_row(resource: PlannedResource) -> dict[str, str]:
    inputs = resource.inputs
    labels = {label["label"].rsplit(".", 1)[-1]: label["value"] for label in inputs.get("labels", [])}
    ports = ", ".join(
        f"{p.get('ip', '0.0.0.0')}:{int(p['external'])}->{int(p['internal'])}" for p in inputs.get("ports", [])
    )
    volumes = ", ".join(
        f"{v.get('volumeName') or v.get('hostPath')}:{v['containerPath']}{':ro' if v.get('readOnly') else ''}"
        for v in inputs.get("volumes", [])
    )
    return {
        "container": str(inputs.get("name", resource.name)),
        "image": labels.get("image", "?"),
        "memory": f"{int(inputs['memory'])}M/{int(inputs['memoryReservation'])}M",
        "cpus": str(inputs.get("cpus", "")),
        "ports": ports or "-",
        "networks": ", ".join(n["name"] for n in inputs.get("networksAdvanced", [])),
        "volumes": volumes or "-",
    }


def _component_of(plan: Plan, resource: PlannedResource) -> str:
    """The top-level component (child of the platform) that a resource belongs to."""
    parents = {r.name: r.parent for r in plan.resources if r.type.startswith("stories:")}
    name: str | None = resource.parent
    while name is not None and parents.get(name) not in (None, "stories"):
        name = parents.get(name)
    return name or "-"


def format_table(plan: Plan) -> str:
    lines = [f"Stack {plan.stack}: {len(plan.resources)} resources"]
    containers = plan.of_type("docker:index/container:Container")
    by_component: dict[str, list[dict[str, str]]] = {}
    for container in containers:
        by_component.setdefault(_component_of(plan, container), []).append(_container_row(container))
    columns = ["container", "image", "memory", "cpus", "ports", "networks", "volumes"]
    for component, rows in sorted(by_component.items()):
        lines.append("")
        lines.append(f"[{component}]")
        widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
        lines.append("  " + "  ".join(c.ljust(widths[c]) for c in columns))
        lines += ["  " + "  ".join(row[c].ljust(widths[c]) for c in columns) for row in rows]
    lines += _kubernetes_objects(plan)
    others: dict[str, int] = {}
    for resource in plan.resources:
        if resource.type.startswith(KUBERNETES_OBJECT):
            continue
        if resource.type != "docker:index/container:Container" and not resource.type.startswith("stories:"):
            others[resource.type] = others.get(resource.type, 0) + 1
    lines.append("")
    lines.append("Other resources:")
    lines += [f"  {count:3d} x {type_}" for type_, count in sorted(others.items())]
    lines.append("")
    lines.append("Outputs:")
    lines += [f"  {key} = {value}" for key, value in plan.outputs.items()]
    if plan.budget:
        lines.append("")
        lines += format_budget(plan.budget)
    return "\n".join(lines)


KUBERNETES_OBJECT = "kubernetes:"


def _kubernetes_objects(plan: Plan) -> list[str]:
    """The Kubernetes target's objects by component: kind, namespace/name (Helm releases: chart and version)."""
    by_component: dict[str, list[str]] = {}
    for resource in plan.resources:
        if not resource.type.startswith(KUBERNETES_OBJECT):
            continue
        kind = resource.type.rsplit(":", 1)[-1]
        inputs = resource.inputs
        metadata = inputs.get("metadata") or {}
        if kind == "Release":
            where = f"{inputs.get('namespace')}/{inputs.get('name')}  {inputs.get('chart')} {inputs.get('version')}"
        else:
            where = "/".join(part for part in (metadata.get("namespace"), metadata.get("name")) if part)
        by_component.setdefault(_component_of(plan, resource), []).append(f"  {kind:<24} {where}")
    lines = []
    for component, rows in sorted(by_component.items()):
        lines += ["", f"[{component}]", *sorted(rows)]
    return lines


def format_budget(budget: Mapping[str, Any]) -> list[str]:
    """The host budget as the table's last section."""
    rows = [
        {"budget": "memory reservations", **_budget_cells(budget["memoryReservationMb"], " MB")},
        {"budget": "memory limits", **_budget_cells(budget["memoryMb"], " MB")},
        {"budget": "cpus", **_budget_cells(budget["cpus"], "")},
    ]
    columns = ["budget", "sum", "host", "headroom"]
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    return [
        f"Host budget: {budget['containers']} containers, the app at maxReplicas ({budget['appReplicas']}); "
        "config containers never run and count nothing",
        "  " + "  ".join(c.ljust(widths[c]) for c in columns).rstrip(),
        *("  " + "  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows),
    ]


def _budget_cells(row: Mapping[str, Any], unit: str) -> dict[str, str]:
    used, host, headroom = row["used"], row["host"], row["headroomPercent"]
    return {"sum": f"{used:g}{unit}", "host": f"{host:g}{unit}", "headroom": f"{headroom:g}%"}


def write_config_files(stack: str, out: Path) -> list[Path]:
    """Every rendered config file of the stack as out/<service>/<file>."""
    from configs.render import image_versions, render_all
    from model.topology import container_topology

    settings = settings_for(stack)
    written = []
    for service, files in render_all(settings, container_topology(settings), image_versions(settings)).items():
        for name, content in files.items():
            path = out / service / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            written.append(path)
    return written


def _plan_for_tools(stack: str, out: Path | None) -> dict[str, Any]:
    """One stack's plan for another tool; a missing stack file or bad config is data, not an exit."""
    if not (ROOT / f"Pulumi.{stack}.yaml").exists():
        return {"stack": stack, "missing": True}
    try:
        document = run_plan(stack).as_json()
    except ConfigError as error:
        return {"stack": stack, "error": str(error)}
    if out:
        write_config_files(stack, out / stack)
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make plan", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--format", default="table")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stacks", help="plan several stacks in one run (JSON for tools: make plan-diff)")
    args = parser.parse_args(argv)
    if args.stacks:
        print(json.dumps({"plans": [_plan_for_tools(stack, args.out) for stack in args.stacks.split(",")]}))
        return 0
    if args.format not in ("table", "json"):
        print(f"FORMAT = {args.format!r}: must be table or json", file=sys.stderr)
        return 2
    if not (ROOT / f"Pulumi.{args.stack}.yaml").exists():
        known = ", ".join(sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")))
        print(f"STACK = {args.stack!r}: no Pulumi.{args.stack}.yaml; known stacks: {known}", file=sys.stderr)
        return 2
    try:
        plan = run_plan(args.stack)
    except ConfigError as error:
        print(f"Pulumi.{args.stack}.yaml: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(plan.as_json(), indent=2, sort_keys=False))
    else:
        print(format_table(plan))
    if args.out:
        written = write_config_files(args.stack, args.out)
        print(f"wrote {len(written)} config files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # A short-lived command: no cyclic garbage collection while it runs (see _plan_runtime), nor when it
    # ends. Python collects once more at exit, walking every object of the SDKs to free the cycles the
    # runtime left (about 0.1 s for prod); frozen, they are simply left to the process's end.
    gc.disable()
    status = main()
    gc.freeze()
    sys.exit(status)
