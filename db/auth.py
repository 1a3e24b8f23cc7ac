"""Password hashing and API keys: standard library only (``hashlib``, ``hmac``, ``secrets``).

Passwords are low-entropy secrets a person chose, so they get a deliberately slow, memory-hard
hash (scrypt) with a random salt; the parameters travel inside the stored string so they can be
raised later without breaking old hashes. API keys are 256-bit random strings we generate, so a
fast hash (SHA-256) is enough: nobody can brute-force 2^256 candidates however cheap each guess
is, and a slow hash would add ~50 ms to every API request for no gain.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

SCRYPT_N: Final = 2**14
"""CPU/memory cost: 2^14 × r 8 × 128 B = 16 MiB and ~50 ms per hash (OWASP's minimum)."""
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SCRYPT_DKLEN: Final = 32
SALT_BYTES: Final = 16
MAX_PASSWORD_CHARS: Final = 1024
"""Longer inputs are refused: scrypt's first pass is linear in the input's length."""
_SCHEME: Final = "scrypt"
# Bounds on parameters read back from a stored hash, so a tampered row cannot make a login
# allocate gigabytes or spin for minutes.
_MAX_N: Final = 2**20
_MAX_R: Final = 32
_MAX_P: Final = 16

API_KEY_SCHEME: Final = "od"
API_KEY_PREFIX_BYTES: Final = 6
"""12 hex characters: what listings show and what finds the key's row."""
API_KEY_SECRET_BYTES: Final = 32
"""256 bits of randomness: see the module docstring for why SHA-256 then suffices."""
MAX_API_KEY_CHARS: Final = 200


class PasswordError(ValueError):
    """A password we refuse to hash (empty or absurdly long)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=256 * n * r + 2**20,  # scrypt needs 128·n·r bytes; leave headroom
    )


def hash_password(password: str) -> str:
    """Hash ``password`` as ``scrypt$n$r$p$salt$hash`` (base64url); refuse empty ones."""
    if not password or not password.strip():
        raise PasswordError("a password may not be empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time compare; malformed → False)."""
    if not password or len(password) > MAX_PASSWORD_CHARS:
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return False
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return False
    if not salt or not expected:
        return False
    actual = _scrypt(password, salt, n=n, r=r, p=p, dklen=len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with weaker parameters than today's."""
    parts = stored.split("$")
    return len(parts) != 6 or parts[1:4] != [str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    """Spend a real verification's time on a user that does not exist (no user enumeration)."""
    verify_password(password or "x", _dummy_hash())


def generate_password() -> str:
    """A random password for the first-run admin: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class ParsedApiKey:
    """An API key split into the prefix that finds its row and the whole key to hash."""

    prefix: str
    key: str


def generate_api_key() -> str:
    """A new key ``od_<prefix>_<secret>``: 12 hex characters of prefix, 256 random bits."""
    prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
    secret = secrets.token_urlsafe(API_KEY_SECRET_BYTES)
    return f"{API_KEY_SCHEME}_{prefix}_{secret}"


def parse_api_key(key: str) -> ParsedApiKey | None:
    """Split a presented key, or ``None`` when it cannot be one of ours."""
    if not isinstance(key, str) or len(key) > MAX_API_KEY_CHARS:
        return None
    key = key.strip()
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != API_KEY_SCHEME or len(prefix) != 2 * API_KEY_PREFIX_BYTES or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in prefix):
        return None
    return ParsedApiKey(prefix=prefix, key=key)


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the whole key (fast on purpose: see the module docstring)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_key_matches(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_api_key(key), stored_hash)
