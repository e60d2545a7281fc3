"""Who may read the dashboard: the auth file, the login on every request, loopback-only without a login,
and the one-line errors of the `dashboard` command."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from dashboards import auth as auth_module
from dashboards.app import create_app, dashboard_server
from dashboards.auth import AuthConfig, LockoutConfig, load_auth
from dashboards.server import DashboardServer, check_exposure
from fabricscope import cli
from pipeline.errors import InputError
from pipeline.store import Store, StoreConfig
from pipeline.topology import load_topology

TOPOLOGY_FILE = Path(__file__).resolve().parents[2] / "samples" / "topology.yaml"
TOKEN = "0123456789abcdef-token"


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth.yaml"
    path.write_text(f'users:\n  alice: "{generate_password_hash("s3cret")}"\ntokens:\n  - "{TOKEN}"\n')
    return path


def unopened_store() -> Store:
    """Building the app touches no store: every query runs in callbacks."""
    return Store(StoreConfig(dsn="chdb:///nonexistent"))


def test_auth_file_is_validated_with_the_reason(tmp_path: Path, auth_file: Path) -> None:
    config = load_auth(auth_file)
    assert config.check_password("alice", "s3cret") and not config.check_password("alice", "wrong")
    assert config.check_token(TOKEN) and not config.check_token(TOKEN[:-1])
    cases = {
        "users: {bob: hunter2}": "password hash",
        "tokens: [short]": "at least 16",
        "{}": "nobody could log in",
        "passwords: []": "'users' and/or 'tokens'",
        "users: [": "invalid YAML",
        f"tokens: ['{TOKEN}']\nlockout: {{tries: 3}}": "'lockout' may set",
        f"tokens: ['{TOKEN}']\nlockout: {{failures: 0}}": "lockout.failures",
        f"tokens: ['{TOKEN}']\nlockout: {{window_s: -1}}": "lockout.window_s",
    }
    for text, reason in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(InputError, match=reason) as error:
            load_auth(path)
        assert str(path) in str(error.value)
    with pytest.raises(InputError, match="cannot read"):
        load_auth(tmp_path / "missing.yaml")
    assert config.lockout == LockoutConfig()
    (tmp_path / "lockout.yaml").write_text(f"tokens: ['{TOKEN}']\nlockout: {{failures: 3, window_s: 30}}")
    assert load_auth(tmp_path / "lockout.yaml").lockout == LockoutConfig(failures=3, window_s=30.0)


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(n, r, p) of every scrypt werkzeug runs: the hash work behind an answer, at the hashlib boundary."""
    calls: list[tuple[int, int, int]] = []
    real: Callable[..., bytes] = hashlib.scrypt

    def counted(password: bytes, *, salt: bytes, n: int, r: int, p: int, maxmem: int = 0, dklen: int = 64) -> bytes:
        calls.append((n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    return calls


def test_an_unknown_user_costs_the_same_hash_work_as_a_wrong_password(
    auth_file: Path, scrypt_calls: list[tuple[int, int, int]]
) -> None:
    """Before, an unknown name answered in ~0.8 ms and a known one with a wrong password in ~87 ms (scrypt)."""
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE), auth=load_auth(auth_file))
    client = app.server.test_client()
    scrypt_calls.clear()
    assert client.get("/", auth=("alice", "wrong")).status_code == 401
    known = list(scrypt_calls)
    scrypt_calls.clear()
    assert client.get("/", auth=("mallory", "wrong")).status_code == 401
    unknown = list(scrypt_calls)
    assert known == unknown == [(32768, 8, 1)]
    scrypt_calls.clear()
    assert client.get("/", auth=("mallory", "")).status_code == 401
    assert scrypt_calls == [(32768, 8, 1)]


def test_the_dummy_hash_has_the_files_parameters(scrypt_calls: list[tuple[int, int, int]]) -> None:
    config = AuthConfig(users={"bob": generate_password_hash("pw", method="scrypt:16384:8:1")}, tokens=())
    scrypt_calls.clear()
    assert not config.check_password("nobody", "pw") and not config.check_password("bob", "wrong")
    assert config.check_password("bob", "pw")
    assert scrypt_calls == [(16384, 8, 1)] * 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_from_one_address_are_answered_429_until_the_bucket_refills(
    auth_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(auth_module, "_now", clock)
    config = load_auth(auth_file)
    config = AuthConfig(users=config.users, tokens=config.tokens, lockout=LockoutConfig(failures=3, window_s=30))
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE), auth=config)
    attacker = app.server.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert attacker.get("/", auth=("alice", "wrong")).status_code == 401
    assert attacker.get("/", auth=("mallory", "wrong")).status_code == 401
    assert attacker.get("/", headers={"Authorization": "Bearer not-the-token-at-all"}).status_code == 401
    locked = attacker.get("/", auth=("alice", "wrong"))
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "10"
    assert attacker.get("/", auth=("alice", "s3cret")).status_code == 429  # no oracle while locked
    assert attacker.get(f"/?token={TOKEN}").status_code == 429
    assert attacker.get("/").status_code == 401  # no credential: the challenge, and no count

    neighbour = app.server.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "192.0.2.8"
    assert neighbour.get("/", auth=("alice", "s3cret")).status_code == 200
    assert neighbour.get("/_dash-layout").status_code == 200

    clock.now += 9.5
    assert attacker.get("/", auth=("alice", "s3cret")).status_code == 429
    clock.now += 0.5  # one try earned back: it is spent by the next failure
    assert attacker.get("/", auth=("alice", "wrong")).status_code == 401
    assert attacker.get("/", auth=("alice", "s3cret")).status_code == 429
    clock.now += 30  # the bucket is full again
    assert attacker.get("/", auth=("alice", "s3cret")).status_code == 200
    assert attacker.get("/_dash-layout").status_code == 200


def test_a_valid_login_spends_nothing(auth_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_module, "_now", FakeClock())
    config = load_auth(auth_file)
    config = AuthConfig(users=config.users, tokens=config.tokens, lockout=LockoutConfig(failures=1, window_s=60))
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE), auth=config)
    client = app.server.test_client()
    for _ in range(3):
        assert client.get("/_dash-layout", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", auth=("alice", "wrong")).status_code == 401
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429


def test_every_request_needs_a_login_when_auth_is_on(auth_file: Path) -> None:
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE), auth=load_auth(auth_file))
    client = app.server.test_client()
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/", auth=("alice", "wrong")).status_code == 401
    assert client.get("/", auth=("alice", "s3cret")).status_code == 200
    assert client.get("/_dash-layout").status_code == 200  # the session cookie now carries the login
    scripted = app.server.test_client()
    assert scripted.get("/_dash-layout", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert scripted.get("/_dash-layout").status_code == 401  # a bearer token opens no session
    browser = app.server.test_client()
    login = browser.get(f"/?token={TOKEN}&link=leaf1-spine1")
    assert login.status_code == 302 and login.headers["Location"].endswith("/?link=leaf1-spine1")
    assert browser.get("/").status_code == 200


class NoPackets:
    """A PacketSource that must never be reached without a login."""

    def listing(self, packet_request: object, rows: int) -> object:
        raise AssertionError("reached without a login")

    def pcapng(self, packet_request: object) -> tuple[bytes, int]:
        raise AssertionError("reached without a login")


def test_every_route_the_server_has_refuses_a_request_without_login(auth_file: Path) -> None:
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE), auth=load_auth(auth_file),
                     metrics=lambda: (b"", "text/plain"), packets=NoPackets())  # type: ignore[arg-type]
    rules = {rule.rule for rule in app.server.url_map.iter_rules()}
    assert {"/metrics", "/packets.pcapng"} <= rules
    client = app.server.test_client()
    for rule in sorted(rules):
        path = rule.replace("<path:", "<").replace("<", "").replace(">", "")
        assert client.get(f"{path}?event=abc").status_code == 401, rule
    assert client.get("/packets.pcapng?event=abc", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_without_auth_the_page_is_open_on_loopback() -> None:
    app = create_app(unopened_store(), load_topology(TOPOLOGY_FILE))
    page = app.server.test_client().get("/_dash-layout")
    assert page.status_code == 200 and b"fabric-map" in page.data


def test_only_loopback_is_served_without_a_login() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(host, has_auth=False)
    for host in ("0.0.0.0", "10.1.2.3", "::", "dashboard.example"):
        with pytest.raises(InputError, match="--auth"):
            check_exposure(host, has_auth=False)
        check_exposure(host, has_auth=True)
    with pytest.raises(InputError):
        dashboard_server(unopened_store(), load_topology(TOPOLOGY_FILE), host="0.0.0.0")
    assert dashboard_server(unopened_store(), load_topology(TOPOLOGY_FILE), host="0.0.0.0",
                            auth=AuthConfig(users={}, tokens=(TOKEN,))).host == "0.0.0.0"


def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is already in use"):
            DashboardServer(object(), host="127.0.0.1", port=port).bind()


def test_dashboard_command_refuses_bad_input_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], auth_file: Path
) -> None:
    topology = ["--topology", str(TOPOLOGY_FILE)]
    assert cli.main(["dashboard", "--host", "0.0.0.0", *topology]) == cli.EXIT_BAD_INPUT
    assert "give --auth FILE" in capsys.readouterr().err
    assert cli.main(["dashboard", "--port", "70000", *topology]) == cli.EXIT_BAD_INPUT
    assert cli.main(["dashboard"]) == cli.EXIT_BAD_INPUT
    assert "--topology" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert cli.main(["dashboard", "--port", port, "--auth", str(auth_file), *topology]) == cli.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already in use" in error


def test_a_malformed_auth_file_is_one_input_error_with_its_line(tmp_path: Path) -> None:
    """Issue 13: an auth file that was not UTF-8 was a traceback; so were hashes werkzeug cannot run."""
    hashed = generate_password_hash("s3cret", method="pbkdf2:sha256:1000")
    cases: dict[bytes, tuple[int, str]] = {
        f"tokens: ['{TOKEN}']\n# caf\xe9\n".encode("latin-1"): (2, "not UTF-8 text (byte 0xe9)"),
        f"tokens: ['{TOKEN}']\ntokens: ['{TOKEN}']\n".encode(): (2, "duplicate key 'tokens'"),
        f"users:\n  bob: '{hashed}'\n  eve: 'scrypt:abc$salt$hash'\n".encode(): (3, "scrypt:N:r:p"),
        f"users:\n  eve: '{hashed.replace(':1000$', ':99999999999$')}'\n".encode(): (2, "at most 5000000"),
        f"users:\n  eve: '{hashed.replace('sha256', 'nohash')}'\n".encode(): (2, "pbkdf2:HASH:ITERATIONS"),
        f"tokens: ['{TOKEN}']\nlockout: {{failures: {10**400}}}\n".encode(): (2, "lockout.failures"),
    }
    for text, (line, reason) in cases.items():
        path = tmp_path / "auth.yaml"
        path.write_bytes(text)
        with pytest.raises(InputError) as error:
            load_auth(path)
        assert (error.value.source, error.value.line) == (str(path), line), str(error.value)
        assert reason in error.value.reason
