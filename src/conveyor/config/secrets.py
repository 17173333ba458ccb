"""Checks on the web's secrets, run when settings load: a weak one stops the start.

A session secret guessed offline lets anyone forge an admin's cookie, and a password hash
that is really a password (or a cheap scrypt) gives the users' passwords away with the
configuration file. These checks cannot prove a secret is random; they refuse the ones
that are plainly not.
"""

from __future__ import annotations

import base64
import binascii
import math
import string
import zlib

# The parameters `conveyor hash-password` writes, and the least a hash may use.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_SALT_BYTES = 16
MIN_DIGEST_BYTES = 32

MIN_SECRET_BITS = 256  # 32 bytes
# A random 32-byte secret, however written, does not deflate below this; a repeated
# pattern ("abcdefghij" * 7) does, whatever characters it uses.
MIN_DEFLATED_BYTES = 44
HOW_TO_GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def estimated_bits(secret: str) -> float:
    """At most what a secret drawn at random from the kinds of characters it uses holds."""
    pool = sum(len(chars) for chars in _CLASSES if any(c in chars for c in secret))
    if any(not any(c in chars for chars in _CLASSES) for c in secret):
        pool += 32  # punctuation and the rest
    return len(secret) * math.log2(pool) if pool > 1 else 0.0


def check_session_secret(secret: str | None) -> str | None:
    """The secret, or ValueError (which never quotes it) when it is too weak."""
    if secret is None:
        return None
    deflated = len(zlib.compress(secret.encode(), 9))
    if estimated_bits(secret) < MIN_SECRET_BITS or deflated < MIN_DEFLATED_BYTES:
        raise ValueError(
            "web.session_secret is too weak: it must hold at least 32 bytes of random data "
            "(a cookie signed with a guessable secret can be forged); generate one with: "
            + HOW_TO_GENERATE
        )
    return secret


def check_password_hash(encoded: str) -> str:
    """The hash, or ValueError (which never quotes it) saying what is wrong."""
    hint = "make one with: conveyor hash-password"
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        cost = (int(n), int(r), int(p))
        salt_bytes = base64.b64decode(salt.encode(), altchars=b"-_", validate=True)
        digest_bytes = base64.b64decode(digest.encode(), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(
            f"password_hash is not an scrypt hash (scrypt$N$r$p$salt$digest); {hint}"
        ) from None
    weak = (
        cost[0] < SCRYPT_N
        or cost[0] & (cost[0] - 1)
        or cost[1] < SCRYPT_R
        or cost[2] < SCRYPT_P
        or len(salt_bytes) < MIN_SALT_BYTES
        or len(digest_bytes) < MIN_DIGEST_BYTES
    )
    if weak:
        raise ValueError(
            f"password_hash is too weak (scrypt needs N >= {SCRYPT_N} and a power of two, "
            f"r >= {SCRYPT_R}, p >= {SCRYPT_P}, a salt of {MIN_SALT_BYTES}+ bytes and a digest "
            f"of {MIN_DIGEST_BYTES}+ bytes); {hint}"
        )
    return encoded
