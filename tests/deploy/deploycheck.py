"""Offline checks of the container and ECS deployment files.

Each ``check_*`` function takes file paths and returns a list of problems (empty
when the files pass), so a test can run it on the real files and on a broken
copy. Nothing here talks to a network or to AWS, and nothing builds an image.

- hadolint on the Dockerfile, cfn-lint on the CloudFormation template and
  shellcheck on the shell scripts (tools installed by scripts/check-deploy);
- the task definition validated against the ECS ``RegisterTaskDefinition``
  input shape of the AWS API model shipped with botocore (types, required
  members, unknown keys, minimums, enums);
- the project's own rules tying the files together (drain grace, ports,
  secrets, health check, user, a single task), which the generic tools cannot
  know;
- the deploy script's ``--dry-run``, run in a scratch git repository with
  stand-in ``aws`` and ``docker`` commands that record any call.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


# In the full run (scripts/test and CI set BAYEUX_EDGE_REQUIRE_ALL=1) a check
# that cannot run for lack of a tool, a build or a permission is a failure,
# never a quiet skip; run by hand, it is skipped with its reason.
REQUIRED = os.environ.get("BAYEUX_EDGE_REQUIRE_ALL") == "1"


def unavailable(reason: str):
    import pytest

    if REQUIRED:
        pytest.fail(f"required check could not run: {reason} (BAYEUX_EDGE_REQUIRE_ALL=1)")
    pytest.skip(reason)


ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TASK_DEFINITION = ROOT / "ecs" / "task-definition.json"
TEMPLATE = ROOT / "ecs" / "service.yaml"
ROUTES = ROOT / "ecs" / "routes.production.toml"
FETCH_CLIENT = ROOT / "scripts" / "fetch-client"
DEPLOY_SCRIPT = ROOT / "scripts" / "fargate-deploy.sh"

MAIN_CONTAINER = "bayeux-edge"
PLACEHOLDERS = ("${AWS_ACCOUNT_ID}", "${AWS_REGION}", "${IMAGE}")
SAMPLE = {"account": "123456789012", "region": "eu-west-1"}
ECS_STOP_TIMEOUT_MAX = 120
# A memory engine lives in one process: a memory-only routes file runs exactly this
# many tasks. With the Redis engine every task serves every client: at least this many.
MEMORY_TASKS = 1
REDIS_MIN_TASKS = 2

# Task-level cpu -> allowed memory (MiB) on Fargate.
FARGATE_SIZES = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}


# --- tools -----------------------------------------------------------------------


def tool(name: str) -> str:
    """A tool from the virtualenv running this interpreter, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; run scripts/check-deploy to install it")
    return found


def _run_tool(argv: list[str], cwd: Path | None = None) -> list[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return []
    output = (proc.stdout + proc.stderr).strip() or f"exit status {proc.returncode}"
    return [f"{Path(argv[0]).name}: {line}" for line in output.splitlines()]


def check_hadolint(dockerfile: Path) -> list[str]:
    """hadolint with its defaults: any finding, down to `info`, fails."""
    return _run_tool([tool("hadolint"), "--no-color", dockerfile.name], cwd=dockerfile.parent)


def check_cfn_lint(template: Path) -> list[str]:
    return _run_tool([tool("cfn-lint"), "--", str(template)])


def check_shellcheck(scripts: list[Path]) -> list[str]:
    if not scripts:
        return ["no shell scripts given"]
    return _run_tool([tool("shellcheck"), "--external-sources", *map(str, scripts)])


SHELL_SHEBANG = re.compile(r"^#!\s*(/usr/bin/env\s+)?(/\S*/)?(ba|da|k)?sh\b")


def shell_scripts(root: Path = ROOT) -> list[Path]:
    """Every shell script under scripts/ (by extension or shebang), and .ci/run."""
    found = []
    candidates = sorted(p for p in (root / "scripts").rglob("*") if p.is_file())
    ci_run = root / ".ci" / "run"
    if ci_run.is_file():
        candidates.append(ci_run)
    for path in candidates:
        if path.suffix in (".sh", ".bash"):
            found.append(path)
            continue
        try:
            first = path.open("rb").readline().decode("utf-8", "replace")
        except OSError:
            continue
        if SHELL_SHEBANG.match(first):
            found.append(path)
    return found


# --- Dockerfile ------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def json_args(self) -> list[str] | None:
        """The arguments in exec (JSON array) form, or None for shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM, and the stages."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1] + " "
            continue
        buffer += raw
        logical.append((start, buffer.strip()))
        buffer = ""
    if buffer:
        logical.append((start, buffer.strip()))

    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), number)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0] if words else "", name, number))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


@dataclass
class RuntimeSpec:
    """How the final stage of the Dockerfile starts the server."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    user: str | None
    workdir: str | None
    stopsignal: str | None
    healthcheck: list[str] | None


def runtime_spec(dockerfile: Path = DOCKERFILE) -> RuntimeSpec:
    _, stages = parse_dockerfile(dockerfile.read_text())
    if not stages:
        raise ValueError(f"{dockerfile}: no FROM")
    final = stages[-1]
    env: dict[str, str] = {}
    for instruction in final.all("ENV"):
        env.update(parse_env(instruction.args))
    entry = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    health = final.last("HEALTHCHECK")
    health_argv = None
    if health is not None:
        match = re.search(r"\bCMD\s+(\[.*\])\s*$", health.args)
        if match:
            health_argv = json.loads(match.group(1))
    workdir = final.last("WORKDIR")
    user = final.last("USER")
    stopsignal = final.last("STOPSIGNAL")
    return RuntimeSpec(
        entrypoint=(entry.json_args() or []) if entry else [],
        cmd=(cmd.json_args() or []) if cmd else [],
        env=env,
        user=user.args if user else None,
        workdir=workdir.args if workdir else None,
        stopsignal=stopsignal.args if stopsignal else None,
        healthcheck=health_argv,
    )


def fetch_client_pin(path: Path = FETCH_CLIENT) -> tuple[str | None, str | None]:
    text = path.read_text()
    version = re.search(r"^version=(\S+)$", text, re.M)
    integrity = re.search(r"^integrity=(\S+)$", text, re.M)
    return (version.group(1) if version else None, integrity.group(1) if integrity else None)


def _arg_default(stage: Stage, name: str) -> str | None:
    for instruction in stage.all("ARG"):
        key, sep, value = instruction.args.partition("=")
        if key.strip() == name and sep:
            return value.strip().strip('"')
    return None


def check_dockerfile_rules(dockerfile: Path = DOCKERFILE, fetch_client: Path = FETCH_CLIENT) -> list[str]:
    """The project's rules for the image, beyond what hadolint knows."""
    problems: list[str] = []
    _, stages = parse_dockerfile(dockerfile.read_text())
    if len(stages) < 2:
        return [f"{dockerfile.name}: not a multi-stage build ({len(stages)} stage)"]

    # The Faye bundle comes from the pinned npm package, in a build stage.
    version, integrity = fetch_client_pin(fetch_client)
    faye_stages = [s for s in stages[:-1] if any("faye@" in i.args for i in s.all("RUN"))]
    if not faye_stages:
        problems.append("no build stage fetches the pinned faye npm package")
    for stage in faye_stages:
        run = " ".join(i.args for i in stage.all("RUN"))
        if not re.search(r"npm (pack|ci)\b", run):
            problems.append(f"line {stage.line}: the faye stage uses neither `npm pack` nor `npm ci`")
        if _arg_default(stage, "FAYE_VERSION") != version:
            problems.append(
                f"line {stage.line}: FAYE_VERSION is {_arg_default(stage, 'FAYE_VERSION')!r}, "
                f"scripts/fetch-client pins {version!r}"
            )
        if _arg_default(stage, "FAYE_INTEGRITY") != f"sha512-{integrity}":
            problems.append(f"line {stage.line}: FAYE_INTEGRITY differs from the hash in scripts/fetch-client")
        if "${FAYE_INTEGRITY}" not in run:
            problems.append(f"line {stage.line}: the faye tarball is not checked against FAYE_INTEGRITY")

    cargo = [i for s in stages[:-1] for i in s.all("RUN") if "cargo build" in i.args]
    if not cargo:
        problems.append("no build stage runs `cargo build`")
    for instruction in cargo:
        for flag in ("--release", "--locked"):
            if flag not in instruction.args.split():
                problems.append(f"line {instruction.line}: `cargo build` without {flag}")

    final = stages[-1]
    if final.base.startswith(("rust:", "node:")):
        problems.append(f"line {final.line}: the runtime image is a toolchain image ({final.base})")
    if not any("--from=" in i.args for i in final.all("COPY")):
        problems.append(f"line {final.line}: the runtime stage copies nothing from a build stage")
    spec = runtime_spec(dockerfile)
    if spec.user is None:
        problems.append("the runtime stage has no USER: it would run as root")
    elif spec.user.split(":")[0] in ("root", "0"):
        problems.append(f"USER {spec.user} is root")
    entry = final.last("ENTRYPOINT")
    if entry is None or entry.json_args() is None:
        problems.append("ENTRYPOINT missing or not in exec (JSON array) form")
    cmd = final.last("CMD")
    if cmd is not None and cmd.json_args() is None:
        problems.append(f"line {cmd.line}: CMD not in exec (JSON array) form")
    if spec.stopsignal != "SIGTERM":
        problems.append(f"STOPSIGNAL is {spec.stopsignal!r}, the server drains on SIGTERM")
    if not spec.healthcheck:
        problems.append("HEALTHCHECK missing or not `CMD [..]` in exec form")
    elif not spec.entrypoint or spec.healthcheck[:1] != spec.entrypoint[:1] or "health" not in spec.healthcheck[1:]:
        problems.append(f"HEALTHCHECK {spec.healthcheck} does not run `{' '.join(spec.entrypoint[:1])} health`")
    config = spec.env.get("BAYEUX_EDGE_CONFIG")
    if not config:
        problems.append("ENV BAYEUX_EDGE_CONFIG is not set in the runtime stage")
    elif not any(i.args.split()[-1] == config for i in final.all("COPY")):
        problems.append(f"nothing is copied to BAYEUX_EDGE_CONFIG={config}")
    return problems


# --- routes.toml -----------------------------------------------------------------


def load_routes(path: Path = ROUTES) -> dict:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def env_names(routes: dict) -> set[str]:
    """Names of the environment variables a routes file asks for (`*_env` keys)."""
    names: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key.endswith("_env") and isinstance(item, str):
                    names.add(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(routes)
    return names


def route_engines(routes: dict) -> set[str]:
    """The engines of the routes file's engine routes (`engine`, route over [defaults])."""
    default = routes.get("defaults", {}).get("engine", "memory")
    return {r.get("engine", default) for r in routes.get("route", []) if "upstream" not in r}


def drain_grace(routes: dict) -> float:
    return float(routes.get("server", {}).get("drain_grace_secs", 20))


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def listener_ports(routes: dict) -> tuple[list[int], int | None]:
    server = routes.get("server", {})
    tls = [_port(l["addr"]) for l in server.get("listener", []) if l.get("certificates") or l.get("dev_certificate")]
    admin = server.get("admin", {}).get("addr")
    return tls, (_port(admin) if admin else None)


# --- task definition -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _register_task_definition_shape():
    import botocore.model
    import botocore.session

    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    model = botocore.model.ServiceModel(loader.load_service_model("ecs", "service-2"), "ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


def _enum_problems(value, shape, path: str) -> list[str]:
    problems = []
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                problems += _enum_problems(item, shape.members[key], f"{path}.{key}" if path else key)
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            problems += _enum_problems(item, shape.member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            problems += _enum_problems(item, shape.value, f"{path}.{key}")
    elif kind == "string" and isinstance(value, str) and getattr(shape, "enum", None):
        if value not in shape.enum:
            problems.append(f"Invalid value for parameter {path}: {value!r}, must be one of: {', '.join(shape.enum)}")
    return problems


def validate_against_api_model(params: dict) -> list[str]:
    """botocore's parameter validation of RegisterTaskDefinition, plus enums."""
    from botocore.validate import ParamValidator

    shape = _register_task_definition_shape()
    report = ParamValidator().validate(params, shape)
    problems = report.generate_report().splitlines() if report.has_errors() else []
    return problems + _enum_problems(params, shape, "")


def render_task_definition(text: str, account: str, region: str, image: str) -> str:
    return (
        text.replace("${AWS_ACCOUNT_ID}", account).replace("${AWS_REGION}", region).replace("${IMAGE}", image)
    )


def sample_image(account: str = SAMPLE["account"], region: str = SAMPLE["region"]) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com/bayeux-edge:0123456789ab"


def check_task_definition_model(path: Path = TASK_DEFINITION) -> list[str]:
    """The file, rendered with sample values, against the ECS API model."""
    text = path.read_text()
    try:
        params = json.loads(render_task_definition(text, SAMPLE["account"], SAMPLE["region"], sample_image()))
    except json.JSONDecodeError as error:
        return [f"{path.name}: not JSON: {error}"]
    if not isinstance(params, dict):
        return [f"{path.name}: not a JSON object"]
    return [f"{path.name}: {p}" for p in validate_against_api_model(params)]


def _container(task: dict, name: str) -> dict | None:
    for container in task.get("containerDefinitions", []):
        if container.get("name") == name:
            return container
    return None


def _template(template: Path) -> dict:
    from cfnlint.decode import decode

    parsed, matches = decode(str(template))
    if parsed is None:
        raise ValueError(f"{template}: cannot be parsed: {matches}")
    return parsed


def _template_resources(template: Path) -> dict:
    return _template(template).get("Resources", {})


def _count_bounds(value, parameters: dict) -> tuple[int | None, int | None, int | None]:
    """(default, minimum, maximum) of a DesiredCount: a number, or a Ref to a Number parameter."""
    if isinstance(value, int):
        return value, value, value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
        p = parameters[value["Ref"]]
        as_int = lambda key: int(p[key]) if str(p.get(key, "")).isdigit() else None  # noqa: E731
        return as_int("Default"), as_int("MinValue"), as_int("MaxValue")
    return None, None, None


def _resources_of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r.get("Type") == kind}


def _policy_resources(role: dict) -> list[str]:
    """The Resource patterns of a role's inline policies, with pseudo parameters as globs."""
    patterns = []
    for policy in role.get("Properties", {}).get("Policies", []):
        for statement in policy.get("PolicyDocument", {}).get("Statement", []):
            resources = statement.get("Resource", [])
            for resource in resources if isinstance(resources, list) else [resources]:
                if isinstance(resource, dict) and "Fn::Sub" in resource:
                    resource = resource["Fn::Sub"]
                if isinstance(resource, str):
                    patterns.append(re.sub(r"\$\{AWS::(Partition|Region|AccountId)\}", "*", resource))
    return patterns


def check_task_definition_rules(
    path: Path = TASK_DEFINITION,
    routes_path: Path = ROUTES,
    template: Path = TEMPLATE,
    dockerfile: Path = DOCKERFILE,
) -> list[str]:
    """The project's rules tying the task definition to the other files."""
    problems: list[str] = []
    text = path.read_text()
    leftover = sorted(set(re.findall(r"\$\{[^}]*\}", text)) - set(PLACEHOLDERS))
    if leftover:
        problems.append(f"placeholders the deploy script does not fill: {', '.join(leftover)}")
    try:
        task = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"{path.name}: not JSON: {error}"]
    routes = load_routes(routes_path)
    spec = runtime_spec(dockerfile)
    resources = _template_resources(template)

    if task.get("networkMode") != "awsvpc":
        problems.append(f"networkMode is {task.get('networkMode')!r}; Fargate needs awsvpc")
    if "FARGATE" not in task.get("requiresCompatibilities", []):
        problems.append("requiresCompatibilities does not include FARGATE")
    try:
        cpu, memory = int(task.get("cpu", "")), int(task.get("memory", ""))
        if memory not in FARGATE_SIZES.get(cpu, []):
            problems.append(f"cpu {cpu} with memory {memory} is not a Fargate size")
    except ValueError:
        problems.append("task-level cpu and memory must both be set (numbers as strings)")
    if task.get("runtimePlatform", {}).get("operatingSystemFamily") != "LINUX":
        problems.append("runtimePlatform.operatingSystemFamily is not LINUX")

    roles = {r["Properties"].get("RoleName"): r for r in _resources_of_type(resources, "AWS::IAM::Role").values()}
    for key in ("executionRoleArn", "taskRoleArn"):
        name = str(task.get(key, "")).rsplit("/", 1)[-1]
        if name not in roles:
            problems.append(f"{key} names role {name!r}, which ecs/service.yaml does not create")
    execution_role = roles.get(str(task.get("executionRoleArn", "")).rsplit("/", 1)[-1], {})
    allowed = _policy_resources(execution_role)

    main = _container(task, MAIN_CONTAINER)
    if main is None:
        return problems + [f"no container named {MAIN_CONTAINER!r}"]
    if main.get("essential") is not True:
        problems.append(f"{MAIN_CONTAINER} is not essential")
    if main.get("image") != "${IMAGE}":
        problems.append(f"{MAIN_CONTAINER} image is {main.get('image')!r}, not the ${{IMAGE}} the deploy script fills")
    user = str(main.get("user", spec.user or ""))
    if user.split(":")[0] in ("", "0", "root"):
        problems.append(f"{MAIN_CONTAINER} runs as root (user {user!r})")

    # Ports: the routes file's TLS listener and admin port, over TCP.
    tls_ports, admin_port = listener_ports(routes)
    mapped = {(m.get("containerPort"), m.get("protocol", "tcp")) for m in main.get("portMappings", [])}
    for port in [*tls_ports, admin_port]:
        if port is not None and (port, "tcp") not in mapped:
            problems.append(f"port {port} of ecs/routes.production.toml has no tcp portMapping")

    # Stop: longer than the drain, within the ECS maximum.
    grace = drain_grace(routes)
    stop = main.get("stopTimeout")
    if not isinstance(stop, int):
        problems.append("stopTimeout is not set (the ECS default of 30 s is implicit)")
    elif not grace < stop <= ECS_STOP_TIMEOUT_MAX:
        problems.append(
            f"stopTimeout {stop} must be longer than drain_grace_secs {grace:g} and at most {ECS_STOP_TIMEOUT_MAX}"
        )

    nofile = [u for u in main.get("ulimits", []) if u.get("name") == "nofile"]
    if not nofile:
        problems.append("no nofile ulimit")
    elif not 65535 <= nofile[0].get("softLimit", 0) <= nofile[0].get("hardLimit", 0):
        problems.append("nofile ulimit: need 65535 <= softLimit <= hardLimit")

    # Logs: awslogs into the template's log group.
    groups = {r["Properties"].get("LogGroupName") for r in _resources_of_type(resources, "AWS::Logs::LogGroup").values()}
    for container in task.get("containerDefinitions", []):
        logs = container.get("logConfiguration", {})
        options = logs.get("options", {})
        if logs.get("logDriver") != "awslogs":
            problems.append(f"{container.get('name')}: logDriver is not awslogs")
        elif options.get("awslogs-group") not in groups:
            problems.append(f"{container.get('name')}: log group {options.get('awslogs-group')!r} is not the template's")
        elif not {"awslogs-region", "awslogs-stream-prefix"} <= options.keys():
            problems.append(f"{container.get('name')}: awslogs needs awslogs-region and awslogs-stream-prefix")

    # Health: the image's own probe, in exec form.
    health = main.get("healthCheck", {}).get("command")
    if not health:
        problems.append(f"{MAIN_CONTAINER} has no healthCheck")
    elif spec.healthcheck and health != ["CMD", *spec.healthcheck]:
        problems.append(f"healthCheck {health} differs from the Dockerfile's HEALTHCHECK {spec.healthcheck}")

    # Configuration file and secrets.
    config = {e.get("name"): e.get("value") for e in main.get("environment", [])}
    if "BAYEUX_EDGE_CONFIG" in config and config["BAYEUX_EDGE_CONFIG"] != spec.env.get("BAYEUX_EDGE_CONFIG"):
        problems.append("BAYEUX_EDGE_CONFIG differs from the file the image bakes in")
    needed = env_names(routes)
    secrets = [s.get("name") for s in main.get("secrets", [])]
    for name in sorted(needed - set(secrets)):
        problems.append(f"ecs/routes.production.toml reads {name}, which has no entry in {MAIN_CONTAINER}'s secrets")
    for name in sorted(needed & set(config)):
        problems.append(f"{name} is a plain environment value; it must come from secrets")
    for name in sorted({s for s in secrets if secrets.count(s) > 1}):
        problems.append(f"secret {name} is listed twice")
    for container in task.get("containerDefinitions", []):
        for secret in container.get("secrets", []):
            source = secret.get("valueFrom", "")
            label = f"{container.get('name')}: secret {secret.get('name')}"
            match = re.match(r"^arn:aws:(secretsmanager|ssm):\$\{AWS_REGION\}:\$\{AWS_ACCOUNT_ID\}:(secret:|parameter/)(.+)$", source)
            if not match:
                problems.append(f"{label}: valueFrom is not a Secrets Manager or SSM ARN of this account and region")
                continue
            if match.group(1) == "secretsmanager" and re.search(r"-[A-Za-z0-9]{6}$", match.group(3)):
                problems.append(
                    f"{label}: a secret name ending in '-' and six characters cannot be found from a partial ARN"
                )
            rendered = source.replace("${AWS_REGION}", SAMPLE["region"]).replace("${AWS_ACCOUNT_ID}", SAMPLE["account"])
            if not any(fnmatch.fnmatchcase(rendered, pattern) for pattern in allowed):
                problems.append(f"{label}: the execution role in ecs/service.yaml may not read {source}")

    # Certificates: files the routes file names live on a volume filled before start.
    cert_dirs = {
        str(Path(spec.env.get("BAYEUX_EDGE_CONFIG", "/")).parent / Path(c["cert"]).parent)
        for l in routes.get("server", {}).get("listener", [])
        for c in l.get("certificates", [])
    }
    mounts = {m.get("containerPath"): m for m in main.get("mountPoints", [])}
    for directory in sorted(cert_dirs):
        mount = mounts.get(directory)
        if mount is None:
            problems.append(f"the certificate directory {directory} is not a mount point of {MAIN_CONTAINER}")
            continue
        if mount.get("readOnly") is not True:
            problems.append(f"{MAIN_CONTAINER} mounts {directory} writable")
        writers = [
            c for c in task.get("containerDefinitions", [])
            if c is not main
            and any(m.get("sourceVolume") == mount.get("sourceVolume") and not m.get("readOnly") for m in c.get("mountPoints", []))
        ]
        waits = {d.get("containerName"): d.get("condition") for d in main.get("dependsOn", [])}
        if not any(waits.get(c.get("name")) in ("SUCCESS", "COMPLETE") for c in writers):
            problems.append(f"{MAIN_CONTAINER} does not wait for a container that fills {directory}")
    return [f"{path.name}: {p}" for p in problems]


# --- CloudFormation template -----------------------------------------------------


def _attributes(properties: dict, key: str) -> dict:
    return {a.get("Key"): a.get("Value") for a in properties.get(key, [])}


def check_template_rules(
    template: Path = TEMPLATE, routes_path: Path = ROUTES, task_definition: Path = TASK_DEFINITION
) -> list[str]:
    problems: list[str] = []
    try:
        parsed = _template(template)
    except Exception as error:  # a broken file is a finding, not a crash
        return [f"{template.name}: {error}"]
    resources = parsed.get("Resources", {})
    parameters = parsed.get("Parameters", {})
    routes = load_routes(routes_path)
    task = json.loads(task_definition.read_text())
    main = _container(task, MAIN_CONTAINER) or {}
    tls_ports, admin_port = listener_ports(routes)

    balancers = _resources_of_type(resources, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    if [b["Properties"].get("Type") for b in balancers.values()] != ["network"]:
        problems.append("expected one load balancer, of Type network")
    listeners = _resources_of_type(resources, "AWS::ElasticLoadBalancingV2::Listener")
    tcp443 = [l for l in listeners.values() if l["Properties"].get("Protocol") == "TCP" and l["Properties"].get("Port") == 443]
    if not tcp443:
        problems.append("no TCP listener on port 443")
    groups = _resources_of_type(resources, "AWS::ElasticLoadBalancingV2::TargetGroup")
    if len(groups) != 1:
        problems.append(f"expected one target group, found {len(groups)}")
    for name, group in groups.items():
        props = group["Properties"]
        for listener in tcp443:
            targets = [a.get("TargetGroupArn") for a in listener["Properties"].get("DefaultActions", [])]
            if {"Ref": name} not in targets:
                problems.append(f"the TCP 443 listener does not forward to {name}")
        if props.get("Protocol") != "TCP" or props.get("TargetType") != "ip":
            problems.append(f"{name}: needs Protocol TCP and TargetType ip (awsvpc tasks)")
        if tls_ports and props.get("Port") != tls_ports[0]:
            problems.append(f"{name}: Port {props.get('Port')} is not the TLS listener's {tls_ports[0]}")
        if props.get("HealthCheckProtocol") != "HTTP" or props.get("HealthCheckPath") != "/readyz":
            problems.append(f"{name}: the health check must be HTTP GET /readyz")
        if str(props.get("HealthCheckPort")) != str(admin_port):
            problems.append(f"{name}: HealthCheckPort {props.get('HealthCheckPort')} is not the admin port {admin_port}")
        if _attributes(props, "TargetGroupAttributes").get("preserve_client_ip.enabled") != "true":
            problems.append(
                f"{name}: preserve_client_ip.enabled must be \"true\": the per-address limits need the client's address"
            )
        delay = _attributes(props, "TargetGroupAttributes").get("deregistration_delay.timeout_seconds")
        if delay is None or float(delay) != drain_grace(routes):
            problems.append(
                f"{name}: deregistration_delay.timeout_seconds {delay} is not drain_grace_secs {drain_grace(routes):g}"
            )

    services = _resources_of_type(resources, "AWS::ECS::Service")
    if len(services) != 1:
        problems.append(f"expected one ECS service, found {len(services)}")
    for name, service in services.items():
        props = service["Properties"]
        deployment = props.get("DeploymentConfiguration", {})
        breaker = deployment.get("DeploymentCircuitBreaker", {})
        if breaker.get("Enable") is not True or breaker.get("Rollback") is not True:
            problems.append(f"{name}: the deployment circuit breaker must be enabled with rollback")
        # The task count follows the engines of the routes file. A memory engine
        # keeps its state in the process: a second task would hold a disjoint set
        # of clients, and a publish would reach only one of them. With Redis every
        # task serves every client, and one task alone is a single point of failure.
        default, minimum, maximum = _count_bounds(props.get("DesiredCount"), parameters)
        engines = route_engines(routes)
        if "redis" in engines and "memory" in engines:
            problems.append(f"{name}: routes mix the memory and redis engines; memory routes cannot run on several tasks")
        elif "redis" in engines:
            if default is None or minimum is None or min(default, minimum) < REDIS_MIN_TASKS:
                problems.append(
                    f"{name}: DesiredCount {props.get('DesiredCount')!r} (default {default}, minimum {minimum}) must be "
                    f"at least {REDIS_MIN_TASKS}, with a MinValue of {REDIS_MIN_TASKS}: the routes use the redis engine"
                )
        elif (default, minimum, maximum) != (MEMORY_TASKS,) * 3:
            problems.append(
                f"{name}: DesiredCount is {props.get('DesiredCount')!r}, not exactly {MEMORY_TASKS}: the in-memory engine "
                "cannot be shared between tasks"
            )
        # The new task must be healthy before the old one drains.
        for key, value in (("MinimumHealthyPercent", 100), ("MaximumPercent", 200)):
            if deployment.get(key) != value:
                problems.append(f"{name}: DeploymentConfiguration {key} is {deployment.get(key)!r}, expected {value}")
        if props.get("LaunchType") != "FARGATE":
            problems.append(f"{name}: LaunchType is not FARGATE")
        if "AwsvpcConfiguration" not in props.get("NetworkConfiguration", {}):
            problems.append(f"{name}: no AwsvpcConfiguration")
        wanted = {"ContainerName": MAIN_CONTAINER, "ContainerPort": tls_ports[0] if tls_ports else None}
        balanced = [
            {"ContainerName": b.get("ContainerName"), "ContainerPort": b.get("ContainerPort")}
            for b in props.get("LoadBalancers", [])
        ]
        if wanted not in balanced:
            problems.append(f"{name}: LoadBalancers does not send to {MAIN_CONTAINER}:{wanted['ContainerPort']}")
        grace = props.get("HealthCheckGracePeriodSeconds")
        start = main.get("healthCheck", {}).get("startPeriod", 0)
        if not isinstance(grace, int) or grace < start:
            problems.append(f"{name}: HealthCheckGracePeriodSeconds should cover the container's startPeriod {start}")
    return [f"{template.name}: {p}" for p in problems]


# --- deploy script dry run -------------------------------------------------------

DRY_RUN = {"region": "eu-west-1", "account": "123456789012", "cluster": "edge-cluster", "service": "edge-service",
           "repository": "team/bayeux-edge"}

# Stand-ins for aws and docker: any call is recorded and fails.
RECORDER = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >>"$DEPLOY_CALL_LOG"
exit 97
"""


@dataclass
class DryRun:
    status: int
    stdout: str
    stderr: str
    commands: list[list[str]]
    calls: list[str]
    commit: str
    rendered: Path | None


def scratch_repo(directory: Path, script: Path, task_definition: Path = TASK_DEFINITION,
                 dockerfile: Path = DOCKERFILE) -> str:
    """A git repository with the files a deploy reads; returns its commit (12 digits)."""
    (directory / "scripts").mkdir(parents=True)
    (directory / "ecs").mkdir()
    shutil.copy2(script, directory / "scripts" / "fargate-deploy.sh")
    shutil.copy2(task_definition, directory / "ecs" / "task-definition.json")
    shutil.copy2(dockerfile, directory / "Dockerfile")
    git = ["git", "-C", str(directory), "-c", "user.name=check", "-c", "user.email=check@example.invalid",
           "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "deploy check"], check=True)
    return subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def stand_in_bin(directory: Path, names=("aws", "docker")) -> Path:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name in names:
        path = bin_dir / name
        path.write_text(RECORDER)
        path.chmod(0o755)
    return bin_dir


def dry_run(script: Path, workdir: Path, extra: list[str] = (), task_definition: Path = TASK_DEFINITION) -> DryRun:
    repo = workdir / "repo"
    commit = scratch_repo(repo, script, task_definition)
    bin_dir = stand_in_bin(workdir)
    tmp = workdir / "tmp"
    tmp.mkdir()
    log = workdir / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "ECR_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", DEPLOY_CALL_LOG=str(log), TMPDIR=str(tmp))
    argv = ["bash", str(repo / "scripts" / "fargate-deploy.sh"), "--dry-run",
            "--region", DRY_RUN["region"], "--account", DRY_RUN["account"], "--cluster", DRY_RUN["cluster"],
            "--service", DRY_RUN["service"], "--repository", DRY_RUN["repository"], *extra]
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    commands = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    rendered = next((Path(c[c.index("--cli-input-json") + 1].removeprefix("file://"))
                     for c in commands if "--cli-input-json" in c), None)
    calls = log.read_text().splitlines() if log.exists() else []
    return DryRun(proc.returncode, proc.stdout, proc.stderr, commands, calls, commit, rendered)


def expected_commands(commit: str, register_only: bool = False) -> list[tuple[list[str], dict[str, str]]]:
    """Each expected command: its leading words, and options that must have these values."""
    d = DRY_RUN
    registry = f"{d['account']}.dkr.ecr.{d['region']}.amazonaws.com"
    image = f"{registry}/{d['repository']}:{commit}"
    new = f"arn:aws:ecs:{d['region']}:{d['account']}:task-definition/bayeux-edge:NEW"
    where = {"--region": d["region"], "--cluster": d["cluster"]}
    commands = [
        (["aws", "ecr", "get-login-password", "--region", d["region"], "|", "docker", "login", "--username", "AWS",
          "--password-stdin", registry], {}),
        (["docker", "build"], {"--platform": "linux/amd64", "--tag": image}),
        (["docker", "push", image], {}),
        (["aws", "ecs", "register-task-definition"], {"--region": d["region"]}),
    ]
    if register_only:
        return commands
    return commands + [
        (["aws", "ecs", "describe-services"], {**where, "--services": d["service"]}),
        (["aws", "ecs", "update-service"], {**where, "--service": d["service"], "--task-definition": new}),
        (["aws", "ecs", "wait", "services-stable"], {**where, "--services": d["service"]}),
        (["aws", "ecs", "describe-services"], {**where, "--services": d["service"]}),
    ]


def check_dry_run(script: Path = DEPLOY_SCRIPT, register_only: bool = False,
                  task_definition: Path = TASK_DEFINITION) -> list[str]:
    """Runs the deploy script's --dry-run and compares the commands it prints."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="deploy-dry-run-") as tmp:
        run = dry_run(script, Path(tmp), ["--register-only"] if register_only else [], task_definition)
        if run.status != 0:
            problems.append(f"--dry-run exited with {run.status}: {run.stderr.strip()}")
        for call in run.calls:
            problems.append(f"--dry-run really ran: {call}")
        expected = expected_commands(run.commit, register_only)
        if len(run.commands) != len(expected):
            problems.append(f"printed {len(run.commands)} commands, expected {len(expected)}: "
                            + "; ".join(" ".join(c[:4]) for c in run.commands))
        for index, (prefix, options) in enumerate(expected):
            if index >= len(run.commands):
                problems.append(f"missing command {index + 1}: {' '.join(prefix)}")
                continue
            command = run.commands[index]
            if command[:len(prefix)] != prefix:
                problems.append(f"command {index + 1} is `{' '.join(command)}`, expected `{' '.join(prefix)} ...`")
                continue
            for option, value in options.items():
                if option not in command or command.index(option) + 1 >= len(command) \
                        or command[command.index(option) + 1] != value:
                    problems.append(f"command {index + 1} ({' '.join(prefix[:4])}): {option} should be {value}")
        if run.rendered is None or not run.rendered.is_file():
            problems.append("no rendered task definition was passed to register-task-definition")
        else:
            text = run.rendered.read_text()
            if "${" in text:
                problems.append("the rendered task definition still has ${...} placeholders")
            try:
                params = json.loads(text)
            except json.JSONDecodeError as error:
                problems.append(f"the rendered task definition is not JSON: {error}")
            else:
                problems += [f"rendered task definition: {p}" for p in validate_against_api_model(params)]
                image = expected_commands(run.commit)[2][0][2]
                images = {c.get("image") for c in params.get("containerDefinitions", [])}
                if images != {image}:
                    problems.append(f"rendered images {sorted(map(str, images))} are not the pushed {image}")
    return problems


def assert_clean(problems: list[str]) -> None:
    """Fails a test with every problem on its own line."""
    assert not problems, "\n".join(problems)


def main() -> int:
    """Runs every check on the real files and prints the problems."""
    checks = {
        "hadolint": lambda: check_hadolint(DOCKERFILE),
        "dockerfile rules": check_dockerfile_rules,
        "cfn-lint": lambda: check_cfn_lint(TEMPLATE),
        "template rules": check_template_rules,
        "task definition vs API model": check_task_definition_model,
        "task definition rules": check_task_definition_rules,
        "shellcheck": lambda: check_shellcheck(shell_scripts()),
        "deploy dry run": check_dry_run,
    }
    failed = 0
    for name, check in checks.items():
        problems = check()
        print(f"{'ok  ' if not problems else 'FAIL'} {name}")
        for problem in problems:
            print(f"     {problem}")
        failed += bool(problems)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
