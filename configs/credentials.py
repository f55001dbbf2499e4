"""Password verifiers, so that no service's file holds a plaintext password.

PostgreSQL and PgBouncer accept a SCRAM-SHA-256 verifier in place of a password (RFC 5802/7677), and
Redis ACLs accept the SHA-256 of a password. The salt is an input, not generated here, so the same
password and salt always give the same verifier and a re-run of the program changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SCRAM_ITERATIONS = 4096


def scram_sha256_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The verifier PostgreSQL stores in pg_authid.rolpassword for `password`."""
    if len(salt) < 16:
        raise ValueError("a SCRAM salt must be at least 16 bytes")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def redis_acl_hash(password: str) -> str:
    """The `#<hex>` form of a Redis ACL password."""
    return hashlib.sha256(password.encode()).hexdigest()
