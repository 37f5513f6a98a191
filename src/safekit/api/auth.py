"""Who may use the API: users (scrypt-hashed passwords), bearer tokens (stored as SHA-256), browser
sessions (cookie + CSRF token), cluster tokens (signed with the cluster key, for node-to-node calls
and `safekit -H`), the two roles, and login rate limiting.

Users and tokens live in /etc/safekit/api/{users,tokens}.json (0600, root): `safekit api user add`
and `safekit api token create` write them; safekitd reads them again whenever they change, so no
restart is needed. Nothing here keeps a secret in clear: a token is shown once, when created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from safekit.host import persist

USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
MIN_PASSWORD = 8
# scrypt cost: OWASP's "N=2^14, r=8, p=5" (16 MiB, about 0.1 s here): safekitd's memory budget
# forbids argon2id's recommended 19-64 MiB per login on top of its resident set.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 5
_SCRYPT_MAXMEM = 64 * 1024 * 1024
TOKEN_PREFIX = "skt_"  # noqa: S105 - a prefix, not a secret
CLUSTER_PREFIX = "skc1."
CLUSTER_TOKEN_WINDOW = 120.0
_CLUSTER_INFO = b"safekit api cluster token v1\x00"


class Role(StrEnum):
    MONITOR = "monitor"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or needed is Role.MONITOR


class AuthError(Exception):
    """A credential store problem, one line for the user (CLI)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    method: str
    """token, session, cluster"""

    def describe(self) -> str:
        return f"{self.method}:{self.name}"


# ---------------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def verify_password(password: str, encoded: str) -> bool:
    try:
        kind, n, r, p, salt, digest = encoded.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Checked against for an unknown user, so that a login costs the same whether the user exists.
_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'A' * 22}${'A' * 43}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- users and tokens on disk


class CredentialStore:
    """users.json and tokens.json; re-read when their modification time changes."""

    def __init__(self, users: Path, tokens: Path) -> None:
        self.users_path = users
        self.tokens_path = tokens
        self._cache: dict[Path, tuple[float, dict[str, Any]]] = {}

    def _load(self, path: Path, key: str) -> dict[str, Any]:
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        cached = self._cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            data = json.loads(path.read_text(encoding="utf-8")).get(key, {})
        except (OSError, ValueError, AttributeError) as exc:
            raise AuthError(f"{path}: unreadable ({exc}); fix or remove it") from exc
        if not isinstance(data, dict):
            raise AuthError(f"{path}: '{key}' must be an object")
        self._cache[path] = (mtime, data)
        return data

    def users(self) -> dict[str, Any]:
        return self._load(self.users_path, "users")

    def tokens(self) -> dict[str, Any]:
        return self._load(self.tokens_path, "tokens")

    # -- checks (daemon side)
    def check_password(self, name: str, password: str) -> Principal | None:
        """The user, when the password is right. Costs one scrypt even for an unknown user."""
        try:
            user = self.users().get(name)
        except AuthError:
            user = None
        if not isinstance(user, dict):
            verify_password(password, _DUMMY_HASH)  # same time whether the user exists or not
            return None
        if not verify_password(password, str(user.get("password", ""))):
            return None
        role = _role(user.get("role"))
        return None if role is None else Principal(name, role, "session")

    def check_token(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        ident, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
        try:
            entry = self.tokens().get(ident)
        except AuthError:
            return None
        if not isinstance(entry, dict) or not secret:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, str(entry.get("sha256", ""))):
            return None
        expires = entry.get("expires")
        if expires and datetime.fromisoformat(str(expires)) < datetime.now(UTC):
            return None
        role = _role(entry.get("role"))
        return None if role is None else Principal(str(entry.get("name") or ident), role, "token")

    # -- changes (CLI side)
    def add_user(self, name: str, password: str, role: Role, *, replace: bool = False) -> None:
        if not USER_NAME.match(name):
            raise AuthError(f"{name!r} is not a user name: letters, digits, '_', '.', '-', at most 32")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"a password has at least {MIN_PASSWORD} characters")
        users = dict(self.users())
        if name in users and not replace:
            raise AuthError(f"user {name} exists (use --replace to change its password or role)")
        users[name] = {"role": str(role), "password": hash_password(password), "created": _now_iso()}
        self._save(self.users_path, "users", users)

    def remove_user(self, name: str) -> None:
        users = dict(self.users())
        if users.pop(name, None) is None:
            raise AuthError(f"no user {name}")
        self._save(self.users_path, "users", users)

    def create_token(self, role: Role, name: str, days: float | None = None) -> str:
        """A new token, returned once: only its SHA-256 is kept."""
        if not USER_NAME.match(name):
            raise AuthError(f"{name!r} is not a token name: letters, digits, '_', '.', '-', at most 32")
        ident = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        expires = (datetime.now(UTC) + timedelta(days=days)).isoformat(timespec="seconds") if days else None
        tokens = dict(self.tokens())
        tokens[ident] = {
            "name": name,
            "role": str(role),
            "sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "created": _now_iso(),
            "expires": expires,
        }
        self._save(self.tokens_path, "tokens", tokens)
        return f"{TOKEN_PREFIX}{ident}_{secret}"

    def revoke_token(self, ident: str) -> None:
        tokens = dict(self.tokens())
        if tokens.pop(ident, None) is None:
            raise AuthError(f"no token {ident}")
        self._save(self.tokens_path, "tokens", tokens)

    def _save(self, path: Path, key: str, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        persist.write_json(path, {"version": 1, key: data})
        self._cache.pop(path, None)


def _role(value: object) -> Role | None:
    try:
        return Role(str(value))
    except ValueError:
        return None


# ---------------------------------------------------------------------- cluster tokens


def _cluster_mac_key(cluster_key: bytes) -> bytes:
    return hmac.new(cluster_key, _CLUSTER_INFO, hashlib.sha256).digest()


def make_cluster_token(cluster_key: bytes, who: str, now: float | None = None) -> str:
    """A short-lived admin token any holder of the cluster key can make (node-to-node, `-H`).

    `who` (e.g. `root@node1`, `node1`) is what the audit log of the called node shows."""
    stamp = int(time.time() if now is None else now)
    body = f"{_b64(who.encode())}.{stamp}.{secrets.token_hex(8)}"
    mac = hmac.new(_cluster_mac_key(cluster_key), body.encode(), hashlib.sha256).hexdigest()
    return f"{CLUSTER_PREFIX}{body}.{mac}"


class ClusterTokens:
    """Checks cluster tokens: signature, age within the window, each one used once."""

    def __init__(self, cluster_key: bytes, window: float = CLUSTER_TOKEN_WINDOW) -> None:
        self._mac_key = _cluster_mac_key(cluster_key)
        self._window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, token: str, now: float | None = None) -> Principal | None:  # noqa: PLR0911
        if not token.startswith(CLUSTER_PREFIX):
            return None
        parts = token[len(CLUSTER_PREFIX) :].split(".")
        if len(parts) != 4:
            return None
        who, stamp, nonce, mac = parts
        body = f"{who}.{stamp}.{nonce}"
        expected = hmac.new(self._mac_key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return None
        now = time.time() if now is None else now
        try:
            age = abs(now - int(stamp))
        except ValueError:
            return None
        if age > self._window:
            return None
        while self._seen and next(iter(self._seen.values())) < now - 2 * self._window:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return None  # a replay
        self._seen[nonce] = now
        try:
            name = _unb64(who).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return Principal(name, Role.ADMIN, "cluster")


# ---------------------------------------------------------------------- sessions


@dataclass
class Session:
    principal: Principal
    csrf: str
    created: float
    last: float


SESSION_IDLE = 30 * 60.0
SESSION_MAX = 12 * 3600.0
MAX_SESSIONS = 256


class Sessions:
    """Browser sessions in memory (a daemon restart logs everyone out)."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, principal: Principal, now: float | None = None) -> tuple[str, Session]:
        now = time.monotonic() if now is None else now
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(24), now, now)
        self._sessions[sid] = session
        return sid, session

    def get(self, sid: str, now: float | None = None) -> Session | None:
        now = time.monotonic() if now is None else now
        session = self._sessions.get(sid)
        if session is None:
            return None
        if now - session.last > SESSION_IDLE or now - session.created > SESSION_MAX:
            del self._sessions[sid]
            return None
        session.last = now
        return session

    def delete(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def _expire(self, now: float) -> None:
        for sid in [s for s, v in self._sessions.items() if now - v.last > SESSION_IDLE]:
            del self._sessions[sid]


# ---------------------------------------------------------------------- login rate limiting


@dataclass
class LoginLimiter:
    """At most `per_source` failed logins per `window` seconds from one address, and `per_user`
    for one user name from anywhere; then 429 until the oldest failure leaves the window."""

    per_source: int = 5
    per_user: int = 10
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, source: str, user: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key, limit in ((f"src:{source}", self.per_source), (f"user:{user}", self.per_user)):
            times = self._prune(key, now)
            if len(times) >= limit:
                wait = max(wait, times[0] + self.window - now)
        return wait

    def failed(self, source: str, user: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._failures) > 10_000:  # bounded memory under a spray of names
            self._failures.clear()
        for key in (f"src:{source}", f"user:{user}"):
            self._failures.setdefault(key, deque()).append(now)

    def _prune(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times
