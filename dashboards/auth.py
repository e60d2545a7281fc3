"""Optional login for the dashboard: HTTP basic auth against password hashes, or a bearer token.

The `--auth FILE` is YAML:

    users:                      # name: werkzeug password hash
      alice: "scrypt:32768:8:1$..."
    tokens:                     # opaque secrets, at least 16 characters
      - "4f9c0d8e5b7a6c3e"
    lockout:                    # optional; these are the defaults
      failures: 10              # a client address may fail this many logins in a row...
      window_s: 60              # ...and earns one more try every window_s / failures seconds

A browser can log in once with `?token=...` (a signed session cookie then carries it) or answer the basic
auth prompt; scripts send `Authorization: Bearer <token>`. Hashes, never passwords, live in the file:
`python -c "from werkzeug.security import generate_password_hash as h; print(h('secret'))"`. The file is
checked whole before the dashboard listens: a hash werkzeug could not run, or one costing more than scrypt
N=2^17, r=16, p=4 or pbkdf2 5M iterations per login, is refused with its line.

A login answer does not tell whether a user name exists: an unknown name is checked against a dummy hash
made with the same method and parameters as the file's own hashes, so it costs the same scrypt work as a
known name with a wrong password, and secrets are compared in constant time. Failed logins (a wrong basic
auth password, an unknown `?token=` or bearer token) are limited per client address by a token bucket:
after `failures` of them the address gets `429 Too Many Requests` with `Retry-After`, for every login
attempt, right or wrong, until the bucket refills (`failures` per `window_s`). A request without any
credential, or with a valid session, never counts. Behind a reverse proxy every client has the proxy's
address, so one client's guesses lock out all of them: put the limit in the proxy there.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, redirect, request, session
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as BaseResponse

from pipeline.errors import InputError
from pipeline.yamlfile import LineDict, line_of, load_yaml

MIN_TOKEN_LENGTH = 16
HASH_METHODS = ("scrypt:", "pbkdf2:")
# the most hash work one login may cost: werkzeug's defaults are scrypt 32768:8:1 and pbkdf2 1M iterations
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 2**17, 16, 4
MAX_PBKDF2_ITERATIONS = 5_000_000
MAX_LOCKOUT_FAILURES = 1_000_000
REALM = "fabricscope"
SESSION_KEY = "fabricscope_auth"
DEFAULT_LOCKOUT_FAILURES = 10
DEFAULT_LOCKOUT_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10_000  # beyond this, clients whose bucket has refilled are forgotten
DEFAULT_HASH_METHOD = "scrypt"  # werkzeug's default, for a file with tokens only


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutConfig:
    """Failed logins per client address: `failures` in a row, then one more per window_s / failures."""

    failures: int = DEFAULT_LOCKOUT_FAILURES
    window_s: float = DEFAULT_LOCKOUT_WINDOW_S


def _dummy_hash(users: Mapping[str, str]) -> str:
    """A hash of a random secret with the method and parameters of the file's first hash."""
    method = next(iter(users.values())).rsplit("$", 2)[0] if users else DEFAULT_HASH_METHOD
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may read the dashboard: users by password hash, and bearer tokens."""

    users: Mapping[str, str]
    tokens: tuple[str, ...]
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    _dummy: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dummy", _dummy_hash(self.users))

    def check_password(self, user: str, password: str) -> bool:
        """The same hash work whether `user` exists or not: an unknown one is checked against the dummy."""
        stored = self.users.get(user)
        matches = check_password_hash(stored if stored is not None else self._dummy, password)
        return matches and stored is not None

    def check_token(self, token: str) -> bool:
        """Compared with every token, each in constant time: the answer's timing names no token."""
        matched = False
        for known in self.tokens:
            matched |= hmac.compare_digest(token.encode(), known.encode())
        return matched


class FailedLogins:
    """A token bucket of failed logins per client address; thread safe (Flask serves requests on threads)."""

    def __init__(self, config: LockoutConfig) -> None:
        self.config = config
        self._rate = config.failures / config.window_s
        self._buckets: dict[str, tuple[float, float]] = {}  # address: (tries left, when)
        self._lock = threading.Lock()

    def _left(self, address: str, now: float) -> float:
        tries, when = self._buckets.get(address, (float(self.config.failures), now))
        return min(float(self.config.failures), tries + (now - when) * self._rate)

    def retry_after_s(self, address: str) -> int:
        """0 when `address` may try to log in, else the whole seconds until it may."""
        with self._lock:
            left = self._left(address, _now())
        return 0 if left >= 1.0 else max(1, math.ceil((1.0 - left) / self._rate))

    def failed(self, address: str) -> None:
        now = _now()
        with self._lock:
            self._buckets[address] = (max(0.0, self._left(address, now) - 1.0), now)
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                for known in [a for a in self._buckets if self._left(a, now) >= self.config.failures]:
                    del self._buckets[known]


def load_auth(path: str | Path) -> AuthConfig:
    """Read and validate an auth file; InputError names the file, the line and what is wrong."""
    source = str(path)
    document = load_yaml(path)
    for key in document:
        if key not in ("users", "tokens", "lockout"):
            raise InputError(source, f"unknown key '{key}': expected a mapping with 'users' and/or 'tokens' "
                             "(and optionally 'lockout')", line=line_of(document, key))
    users = document.get("users") or LineDict()
    tokens = document.get("tokens") or []
    if not isinstance(users, LineDict) or not all(isinstance(v, str) for v in users.values()):
        raise InputError(source, "'users' must map user names to password hashes", line=line_of(document, "users"))
    for user, stored in users.items():
        _check_hash(source, user, stored, line_of(users, user))
    if not isinstance(tokens, list) or not all(isinstance(t, str) and len(t) >= MIN_TOKEN_LENGTH for t in tokens):
        raise InputError(source, f"'tokens' must be a list of strings of at least {MIN_TOKEN_LENGTH} characters",
                         line=line_of(document, "tokens"))
    if not users and not tokens:
        raise InputError(source, "no users and no tokens: nobody could log in")
    lockout = _lockout(source, document.get("lockout"), line_of(document, "lockout"))
    return AuthConfig(users=dict(users), tokens=tuple(tokens), lockout=lockout)


def _check_hash(source: str, user: str, stored: str, line: int) -> None:
    """`method$salt$hash` with a method werkzeug knows and work bounded, so no login fails or stalls on it."""
    def refuse(reason: str) -> InputError:
        return InputError(source, f"user '{user}': {reason}", line=line)

    if not stored.startswith(HASH_METHODS):
        raise refuse("store a werkzeug password hash (scrypt:/pbkdf2:), not a password")
    method, *rest = stored.split("$")
    if len(rest) != 2 or not all(rest):
        raise refuse("a werkzeug password hash is method$salt$hash")
    name, *args = method.split(":")
    if name == "scrypt":
        if len(args) != 3 or not all(arg.isascii() and arg.isdigit() for arg in args):
            raise refuse("scrypt hash method must be scrypt:N:r:p")
        n, r, p = map(int, args)
        if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= MAX_SCRYPT_R and 0 < p <= MAX_SCRYPT_P):
            raise refuse(f"scrypt N must be a power of 2 up to {MAX_SCRYPT_N}, r 1..{MAX_SCRYPT_R}, "
                         f"p 1..{MAX_SCRYPT_P}")
    elif name == "pbkdf2":
        if len(args) != 2 or args[0] not in hashlib.algorithms_guaranteed or not args[1].isascii() \
                or not args[1].isdigit() or not 0 < int(args[1]) <= MAX_PBKDF2_ITERATIONS:
            raise refuse(f"pbkdf2 hash method must be pbkdf2:HASH:ITERATIONS, at most {MAX_PBKDF2_ITERATIONS}")
    else:
        raise refuse(f"unknown hash method '{name}' (scrypt or pbkdf2)")


def _lockout(source: str, section: object, line: int) -> LockoutConfig:
    if section is None:
        return LockoutConfig()
    if not isinstance(section, dict) or not set(section) <= {"failures", "window_s"}:
        raise InputError(source, "'lockout' may set 'failures' and 'window_s'", line=line)
    failures = section.get("failures", DEFAULT_LOCKOUT_FAILURES)
    window_s = section.get("window_s", DEFAULT_LOCKOUT_WINDOW_S)
    if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= MAX_LOCKOUT_FAILURES:
        raise InputError(source, f"lockout.failures: expected a whole number in 1..{MAX_LOCKOUT_FAILURES}", line=line)
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not 0.001 <= window_s < math.inf:
        raise InputError(source, "lockout.window_s: expected a number of seconds, at least 0.001", line=line)
    return LockoutConfig(failures=failures, window_s=float(window_s))


def install_auth(server: Flask, config: AuthConfig) -> None:
    """Refuse every request (pages, assets, callbacks) that carries no valid credential."""
    server.secret_key = secrets.token_bytes(32)
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
    failures = FailedLogins(config.lockout)

    @server.before_request
    def _require_login() -> BaseResponse | None:
        if session.get(SESSION_KEY):
            return None
        token = request.args.get("token", "")
        header = request.headers.get("Authorization", "")
        bearer = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        credentials = request.authorization
        basic = credentials if credentials is not None and credentials.type == "basic" else None
        if not (token or bearer or basic):
            return _challenge()
        address = request.remote_addr or ""
        wait_s = failures.retry_after_s(address)
        if wait_s:
            return Response("fabricscope: too many failed logins from this address; try again later\n", 429,
                            {"Retry-After": str(wait_s)})
        if token and config.check_token(token):
            session[SESSION_KEY] = True
            rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
            return redirect(request.path + (f"?{urlencode(rest)}" if rest else ""))
        if bearer and config.check_token(bearer):
            return None
        if basic is not None and config.check_password(basic.username or "", basic.password or ""):
            session[SESSION_KEY] = True
            return None
        failures.failed(address)
        return _challenge()

    def _challenge() -> Response:
        challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if config.users else {}
        return Response("fabricscope: login required (basic auth, a bearer token or ?token=)\n", 401, challenge)
