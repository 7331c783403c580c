"""The release binary, started the way the container image starts it.

No container engine is needed: the final stage of the Dockerfile is read (so this
cannot drift from it) and reproduced around target/release/bayeux-edge:

- a scratch root laid out like the image: the binary at the ENTRYPOINT path, the
  configuration where ENV BAYEUX_EDGE_CONFIG points, certificates in the
  directory the routes file names (as the ECS tls-init container writes them);
- exactly the ENTRYPOINT and CMD arguments, the ENV of the Dockerfile, its
  WORKDIR, and its USER (a numeric uid and gid, no supplementary groups);
- every environment variable a `*_env` key of the routes file names, set to a
  random value, as the task definition's `secrets` set them on ECS;
- the only differences: paths live under the scratch root, the listeners of
  ecs/routes.production.toml bind 127.0.0.1 port 0, and `--ready-file` is added
  after CMD, as `docker run IMAGE serve --ready-file F` would. The routes keep
  their own keys (publish policy and secrets included).

Then the image's HEALTHCHECK command must pass, a real Faye client (npm faye from
tests/interop) must handshake and subscribe over TLS, a POST without the route's
publish secret must be refused and one with it must reach the subscriber, and
the Dockerfile's STOPSIGNAL must drain the server to a clean exit.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import deploycheck as dc

pytestmark = pytest.mark.binary

BINARY = Path(os.environ.get("BAYEUX_EDGE_BIN", dc.ROOT / "target" / "release" / "bayeux-edge"))
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 20.0
FAYE_SMOKE = Path(__file__).with_name("faye-smoke.js")


def _require_binary():
    if not BINARY.is_file():
        dc.unavailable(f"{BINARY} is not built (cargo build --release --locked); set BAYEUX_EDGE_BIN to use another")


def _ids(user: str | None) -> tuple[int, int]:
    """uid and gid of the Dockerfile's USER; creates a system user for a name that is missing."""
    assert user, "the Dockerfile has no USER"
    name, _, group = user.partition(":")
    if name.isdigit():
        uid = int(name)
        gid = int(group) if group.isdigit() else uid
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           check=True)
            entry = pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    assert uid != 0, "the image must not run as root"
    if os.geteuid() != 0 and os.geteuid() != uid:
        dc.unavailable(f"switching to uid {uid} needs root; running as uid {os.geteuid()}")
    return uid, gid


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def redis_url_names(routes: dict) -> set[str]:
    """The environment variables that hold a Redis URL (`redis_url_env`, in a route or [defaults])."""
    tables = [routes.get("defaults", {}), *routes.get("route", [])]
    return {t["redis_url_env"] for t in tables if isinstance(t.get("redis_url_env"), str)}


def secret_values(routes: dict) -> dict[str, str]:
    """A value for each environment variable the routes file names, as ECS secrets would set:
    random for secrets, a well-formed URL (nothing listening) for Redis URLs."""
    urls = redis_url_names(routes)
    return {
        name: ("redis://127.0.0.1:1/" if name in urls else secrets.token_hex(16))
        for name in sorted(dc.env_names(routes))
    }


class RedisServer:
    """A real redis-server on a free loopback port (for routes using the Redis engine), killed by PID."""

    def __init__(self):
        if shutil.which("redis-server") is None:
            dc.unavailable("redis-server is not installed (the production routes use the Redis engine)")
        self.dir = Path(tempfile.mkdtemp(prefix="bayeux-edge-redis-"))
        for _ in range(10):
            with socket_closed_port() as port:
                self.port = port
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self.stop()
        raise AssertionError("redis-server did not start on any of 10 free ports")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def _wait_ready(self) -> bool:
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def local_routes(production: dict) -> str:
    """ecs/routes.production.toml with loopback port-0 listeners; everything else as it is."""
    server = production.get("server", {})
    lines = ["[server]"]
    lines += [f"{k} = {_toml(v)}" for k, v in server.items() if k not in ("listener", "admin")]
    for listener in server.get("listener", []):
        lines += ["", "[[server.listener]]"]
        lines += [f"{k} = {_toml('127.0.0.1:0' if k == 'addr' else v)}" for k, v in listener.items()]
    lines += ["", "[server.admin]", 'addr = "127.0.0.1:0"']
    if production.get("defaults"):
        lines += ["", "[defaults]"] + [f"{k} = {_toml(v)}" for k, v in production["defaults"].items()]
    for route in production.get("route", []):
        lines += ["", "[[route]]"] + [f"{k} = {_toml(v)}" for k, v in route.items()]
    return "\n".join(lines) + "\n"


def make_certificate(cert: Path, key: Path) -> None:
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )


class ImageLike:
    """A scratch root laid out like the image, and the server process started in it."""

    def __init__(self, routes_text: str | None = None):
        _require_binary()
        self.spec = dc.runtime_spec()
        self.uid, self.gid = _ids(self.spec.user)
        self.production = dc.load_routes()
        self.secrets = secret_values(self.production)
        # Routes on the Redis engine need a reachable Redis to become ready.
        self.redis = RedisServer() if redis_url_names(self.production) else None
        for name in redis_url_names(self.production):
            self.secrets[name] = self.redis.url
        # Not under pytest's tmp_path: that directory is private to root.
        self.root = Path(tempfile.mkdtemp(prefix="bayeux-edge-image-"))
        self.process: subprocess.Popen | None = None
        self.ready: dict | None = None
        self.log = self.root / "server.log"

        entry = self.inside(self.spec.entrypoint[0])
        entry.parent.mkdir(parents=True)
        shutil.copy2(BINARY, entry)
        entry.chmod(0o755)

        self.config = self.inside(self.spec.env["BAYEUX_EDGE_CONFIG"])
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(routes_text if routes_text is not None else local_routes(self.production))
        self.certificates = []
        for listener in self.production["server"].get("listener", []):
            for pair in listener.get("certificates", []):
                cert, key = self.config.parent / pair["cert"], self.config.parent / pair["key"]
                make_certificate(cert, key)
                key.chmod(0o600)
                self.certificates.append(cert)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir()
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, self.uid, self.gid)

    def inside(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": DOCKER_DEFAULT_PATH, "HOME": "/"}
        for key, value in self.spec.env.items():
            # Paths of the image map into the scratch root; everything else is kept.
            env[key] = str(self.inside(value)) if value.startswith("/") else value
        env.update(self.secrets)
        env.update(extra)
        return env

    def argv(self, words: list[str]) -> list[str]:
        return [str(self.inside(words[0])), *words[1:]]

    def run_as_user(self, words: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(words), env=env, cwd=self.inside(self.spec.workdir or "/"),
                              user=self.uid, group=self.gid, extra_groups=[], capture_output=True, text=True,
                              timeout=timeout)

    def start(self) -> dict:
        ready_file = self.tmp / "ready.json"
        argv = self.argv([*self.spec.entrypoint, *self.spec.cmd]) + ["--ready-file", str(ready_file)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=self.env(), cwd=self.inside(self.spec.workdir or "/"),
                                            user=self.uid, group=self.gid, extra_groups=[],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"bayeux-edge exited with {self.process.returncode} before it was ready:\n"
                                     f"{self.log_tail()}")
            if ready_file.is_file():
                try:
                    self.ready = json.loads(ready_file.read_text())
                except json.JSONDecodeError:
                    self.ready = None  # written but not complete yet
                if self.ready is not None:
                    if self.redis:
                        self._wait_redis_ready(deadline)
                    return self.ready
            time.sleep(0.05)
        raise AssertionError(f"no ready file within {START_TIMEOUT} s:\n{self.log_tail()}")

    def _wait_redis_ready(self, deadline: float) -> None:
        """Routes on Redis are ready once the server reached it: wait for /readyz (bounded)."""
        import urllib.error
        import urllib.request

        url = f"http://{self.ready['admin']}/readyz"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"/readyz not 200 within {START_TIMEOUT} s:\n{self.log_tail()}")

    def ids_of_process(self) -> tuple[list[int], list[int], str]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return ([int(v) for v in fields["Uid"].split()], [int(v) for v in fields["Gid"].split()],
                fields["Groups"].strip())

    def log_tail(self, limit: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-limit:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.redis:
            self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def image():
    server = ImageLike()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _admin_url(server: ImageLike) -> str:
    return f"http://{server.ready['admin']}/readyz"


def _tls_endpoint(server: ImageLike, prefix: str) -> str:
    names = [l["name"] for l in server.production["server"]["listener"] if l.get("certificates")]
    addr = server.ready["listeners"][names[0]]
    return f"https://{addr.replace('0.0.0.0', '127.0.0.1')}{prefix}"


def test_runs_as_the_image_user(image):
    uids, gids, groups = image.ids_of_process()
    assert uids == [image.uid] * 4
    assert gids == [image.gid] * 4
    assert groups == ""
    assert image.ready["pid"] == image.process.pid


def test_image_healthcheck_passes(image):
    # The HEALTHCHECK command as written; only the admin port differs from the image's.
    result = image.run_as_user(image.spec.healthcheck, image.env(BAYEUX_EDGE_HEALTH_URL=_admin_url(image)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_with_url_flag_passes(image):
    result = image.run_as_user([image.spec.entrypoint[0], "health", "--url", _admin_url(image)], image.env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_fails_when_nothing_listens(image):
    with socket_closed_port() as port:
        result = image.run_as_user(image.spec.healthcheck,
                                   image.env(BAYEUX_EDGE_HEALTH_URL=f"http://127.0.0.1:{port}/readyz"))
    assert result.returncode == 1, result.stdout + result.stderr


def test_faye_client_subscribes_and_receives_a_posted_message(image):
    node = shutil.which("node")
    if node is None:
        dc.unavailable("node is not installed")
    module_dir = Path(os.environ.get("FAYE_MODULE_DIR", dc.ROOT / "tests" / "interop" / "node_modules"))
    if not (module_dir / "faye" / "package.json").is_file():
        dc.unavailable(f"npm faye is not installed in {module_dir} (npm ci in tests/interop)")
    # The route's own keys over [defaults], as the server merges them.
    route = {**image.production.get("defaults", {}), **image.production["route"][-1]}
    endpoint = _tls_endpoint(image, route["prefix"])
    smoke_env = {**os.environ, "FAYE_MODULE_DIR": str(module_dir)}
    for name in ("PUBLISH_SECRET", "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE"):
        smoke_env.pop(name, None)
    if route.get("publish_secret_env"):
        smoke_env["PUBLISH_SECRET"] = image.secrets[route["publish_secret_env"]]
    if route.get("subscribe") == "jwt":
        smoke_env["JWT_SECRET"] = image.secrets[route["jwt_secret_env"]]
        smoke_env["JWT_ISSUER"] = route["jwt_issuer"]
        smoke_env["JWT_AUDIENCE"] = route["jwt_audience"]
    result = subprocess.run([node, str(FAYE_SMOKE), endpoint, str(image.certificates[0])],
                            env=smoke_env, capture_output=True, text=True, timeout=60)
    report = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, f"{report}\n--- server log ---\n{image.log_tail()}"
    outcome = json.loads(report)
    assert outcome["received"]["nonce"]
    if route.get("publish") == "secret":
        assert outcome["unauthenticated"]["replies"][0]["successful"] is False, outcome
        assert outcome["unauthenticated"]["replies"][0]["error"].startswith("403:"), outcome
    if route.get("subscribe") == "jwt":
        assert "403:" in outcome["foreignSubscription"], outcome


def test_stop_signal_drains_and_exits_cleanly():
    server = ImageLike()
    try:
        server.start()
        signum = getattr(signal, server.spec.stopsignal)
        grace = dc.drain_grace(server.production)
        sent = time.monotonic()
        server.process.send_signal(signum)
        # Readiness fails at once (or the admin port is already closed).
        probe = server.run_as_user(server.spec.healthcheck,
                                   server.env(BAYEUX_EDGE_HEALTH_URL=_admin_url(server)))
        assert probe.returncode == 1, "still ready after the stop signal"
        status = server.process.wait(timeout=grace + 10)
        assert status == 0, f"exit status {status} after {server.spec.stopsignal}\n{server.log_tail()}"
        assert time.monotonic() - sent <= grace + 10
    finally:
        server.stop()


def test_production_routes_pass_check(tmp_path):
    """`bayeux-edge check` accepts ecs/routes.production.toml, with its certificates in place."""
    _require_binary()
    result = _check(tmp_path, dc.ROUTES.read_text())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", sorted(dc.env_names(dc.load_routes())))
def test_production_routes_fail_check_without_a_secret(tmp_path, missing):
    """Each secret the routes file names is required: without it the server refuses the file."""
    _require_binary()
    result = _check(tmp_path, dc.ROUTES.read_text(), unset=missing)
    output = result.stdout + result.stderr
    assert result.returncode == 64, output
    assert "_env" in output and missing in output, output


def _check(tmp_path: Path, text: str, unset: str | None = None) -> subprocess.CompletedProcess:
    """`bayeux-edge check` on `text`, with certificates in place and the secrets set (but `unset`)."""
    config = tmp_path / "routes.toml"
    config.write_text(text)
    for listener in dc.load_routes()["server"].get("listener", []):
        for pair in listener.get("certificates", []):
            if not (tmp_path / pair["cert"]).exists():
                make_certificate(tmp_path / pair["cert"], tmp_path / pair["key"])
    values = secret_values(dc.load_routes())
    env = {k: v for k, v in os.environ.items() if k != "BAYEUX_EDGE_CONFIG" and k not in values}
    env.update({k: v for k, v in values.items() if k != unset})
    return subprocess.run([str(BINARY), "check", "--config", str(config)], env=env, capture_output=True, text=True,
                          timeout=30)


def test_check_accepts_the_local_copy_of_production_routes(tmp_path):
    _require_binary()
    result = _check(tmp_path, local_routes(dc.load_routes()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_rejects_a_broken_copy(tmp_path):
    """The binary's own validation fails on the same file with a misspelt key."""
    _require_binary()
    text = local_routes(dc.load_routes())
    assert text.count("drain_grace_secs = ") == 1
    result = _check(tmp_path, text.replace("drain_grace_secs = ", "drain_grace_sec = "))
    assert result.returncode == 64, result.stdout + result.stderr


class socket_closed_port:
    """A loopback port that was just bound and released, so nothing listens on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None
