"""Optional login for the dashboard: HTTP basic auth against password hashes, or a bearer token.

The `--auth FILE` is YAML:

    users:                      # name: werkzeug password hash
      alice: "scrypt:32768:8:1$..."
    tokens:                     # opaque secrets, at least 16 characters
      - "4f9c0d8e5b7a6c3e"

A browser can log in once with `?token=...` (a signed session cookie then carries it) or answer the basic
auth prompt; scripts send `Authorization: Bearer <token>`. Hashes, never passwords, live in the file:
`python -c "from werkzeug.security import generate_password_hash as h; print(h('secret'))"`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import yaml
from flask import Flask, Response, redirect, request, session
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as BaseResponse

from pipeline.errors import InputError

MIN_TOKEN_LENGTH = 16
HASH_METHODS = ("scrypt:", "pbkdf2:")
REALM = "fabricscope"
SESSION_KEY = "fabricscope_auth"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may read the dashboard: users by password hash, and bearer tokens."""

    users: Mapping[str, str]
    tokens: tuple[str, ...]

    def check_password(self, user: str, password: str) -> bool:
        stored = self.users.get(user)
        return stored is not None and check_password_hash(stored, password)

    def check_token(self, token: str) -> bool:
        return any(hmac.compare_digest(token.encode(), known.encode()) for known in self.tokens)


def load_auth(path: str | Path) -> AuthConfig:
    """Read and validate an auth file; InputError names the file and what is wrong."""
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(source, f"cannot read the auth file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(source, f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not set(document) <= {"users", "tokens"}:
        raise InputError(source, "expected a mapping with 'users' and/or 'tokens'")
    users = document.get("users") or {}
    tokens = document.get("tokens") or []
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise InputError(source, "'users' must map user names to password hashes")
    for user, stored in users.items():
        if not stored.startswith(HASH_METHODS):
            raise InputError(source, f"user '{user}': store a werkzeug password hash (scrypt:/pbkdf2:), "
                             "not a password")
    if not isinstance(tokens, list) or not all(isinstance(t, str) and len(t) >= MIN_TOKEN_LENGTH for t in tokens):
        raise InputError(source, f"'tokens' must be a list of strings of at least {MIN_TOKEN_LENGTH} characters")
    if not users and not tokens:
        raise InputError(source, "no users and no tokens: nobody could log in")
    return AuthConfig(users=dict(users), tokens=tuple(tokens))


def install_auth(server: Flask, config: AuthConfig) -> None:
    """Refuse every request (pages, assets, callbacks) that carries no valid credential."""
    server.secret_key = secrets.token_bytes(32)
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")

    @server.before_request
    def _require_login() -> BaseResponse | None:
        if session.get(SESSION_KEY):
            return None
        token = request.args.get("token", "")
        if token and config.check_token(token):
            session[SESSION_KEY] = True
            rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
            return redirect(request.path + (f"?{urlencode(rest)}" if rest else ""))
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and config.check_token(header.removeprefix("Bearer ").strip()):
            return None
        credentials = request.authorization
        if credentials is not None and credentials.type == "basic" and config.check_password(
                credentials.username or "", credentials.password or ""):
            session[SESSION_KEY] = True
            return None
        challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if config.users else {}
        return Response("fabricscope: login required (basic auth, a bearer token or ?token=)\n", 401, challenge)
