"""Running pgBackRest, restic and psql, and turning their failures into one clear message."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence

from backup.config import BackupJobConfig


class BackupError(Exception):
    """A failure an operator can act on; its message says what went wrong and where."""


# (pattern in the tool's output, message); the first match wins.
PGBACKREST_ERRORS = [
    (
        r"CryptoError|cipher header invalid|unable to flush|is or was the repo encrypted"
        r"|key/value found outside of section",  # an info file decrypted with the wrong key is garbage
        "wrong repository passphrase (PGBACKREST_REPO1_CIPHER_PASS) for the pgBackRest repository",
    ),
    (
        r"FileMissingError.*(archive\.info|backup\.info)|stanza '[^']+' does not exist"
        r"|has no backups|no backup set found",
        "no pgBackRest repository (or no backup) for stanza '{stanza}' at {where}",
    ),
    (r"invalid checksum|checksum mismatch|is corrupt|invalid result", "the pgBackRest repository is corrupted"),
    (
        r"\[03[89]\]|Access Denied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket",
        "the S3 repository refused access (bucket, keys or permissions)",
    ),
]
RESTIC_ERRORS = [
    (r"wrong password or no key found", "wrong repository password (RESTIC_PASSWORD) for the restic repository"),
    (
        r"Is there a repository at the following location|unable to open config file|repository does not exist",
        "no restic repository at {where}",
    ),
    (
        r"pack .* contains \d+ errors|ciphertext verification failed|Fatal: repository contains errors"
        r"|hash does not match",
        "the restic repository is corrupted",
    ),
    (
        r"Access Denied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket",
        "the S3 repository refused access (bucket, keys or permissions)",
    ),
]


def _explain(output: str, patterns: Sequence[tuple[str, str]], **context: str) -> str | None:
    for pattern, message in patterns:
        if re.search(pattern, output, re.IGNORECASE):
            return message.format(**context)
    return None


def _printable(line: str, limit: int = 240) -> str:
    text = "".join(character if character.isprintable() else "?" for character in line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_lines(output: str, count: int = 3) -> str:
    lines = [_printable(line) for line in output.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def run(
    argv: Sequence[str],
    patterns: Sequence[tuple[str, str]] = (),
    timeout: int = 6 * 3600,
    input_text: str | None = None,
    **context: str,
) -> str:
    """Run a tool; on failure raise BackupError with the matching explanation and the tool's last words."""
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",  # a wrong key decrypts to bytes that are not text
            timeout=timeout,
            input=input_text,
            env=os.environ.copy(),
            check=False,
        )
    except FileNotFoundError:
        raise BackupError(f"{argv[0]} is not installed here") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} did not finish in {timeout} s") from None
    if result.returncode != 0:
        output = result.stdout + "\n" + result.stderr
        explanation = _explain(output, patterns, **context)
        detail = _last_lines(output)
        raise BackupError(f"{explanation}: {detail}" if explanation else f"{argv[0]} failed: {detail}")
    return result.stdout


def explain_pgbackrest(output: str, config: BackupJobConfig) -> str | None:
    return _explain(output, PGBACKREST_ERRORS, stanza=config.stanza, where="the configured repository")


def pgbackrest(config: BackupJobConfig, command: str, *options: str, timeout: int = 6 * 3600) -> str:
    argv = ["pgbackrest", f"--config={config.pgbackrest_config}", f"--stanza={config.stanza}", *options, command]
    where = "the configured repository"
    return run(argv, PGBACKREST_ERRORS, timeout=timeout, stanza=config.stanza, where=where)


def restic(config: BackupJobConfig, *arguments: str, timeout: int = 6 * 3600) -> str:
    try:
        repository = config.restic.url()
    except KeyError as missing:
        raise BackupError(f"{missing.args[0]} is not set: the restic repository's bucket is unknown") from None
    argv = ["restic", "--repo", repository, "--no-cache"]
    if config.restic.ca_file:
        argv += ["--cacert", config.restic.ca_file]
    return run([*argv, *arguments], RESTIC_ERRORS, timeout=timeout, where=repository)


def psql(socket_dir: str, port: int, database: str, sql: str, user: str = "postgres") -> list[list[str]]:
    """Rows of a query over the local socket (peer authentication), as lists of strings."""
    output = run(
        [
            "psql",
            "-X",
            "-q",
            "-At",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            socket_dir,
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            database,
            "-c",
            sql,
        ],
        timeout=3600,
    )
    return [line.split("\t") for line in output.splitlines() if line]
