"""Mosquitto password-file hashes and ACL entries for cabinets and the server's own account.

Password file line (Mosquitto 2.0 ``password_file``, the ``$7$`` format that
``mosquitto_passwd`` writes)::

    username:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>

The salt is 12 random bytes and the derived key 64 bytes, both in standard base64 with
padding. ``tests/test_server_broker_acl.py`` checks this implementation against
``mosquitto_passwd`` 2.0.11 and a running broker.

ACL file (``acl_file``): each ``user`` line starts that account's section, and each
``topic read|write|readwrite FILTER`` line grants one access. A cabinet may publish only
its own sales, events, telemetry and status, and read only its own commands and acks.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from kiosk_agent.contract import TOPIC_ROOT, Channel, kiosk_topic

# Mosquitto's default for $7$ hashes. The broker passwords are random 32-character strings
# (192 bits), so more iterations would add little against guessing, while every cabinet
# connection costs the broker one derivation (30,000 cabinets reconnect after an outage).
MOSQUITTO_PBKDF2_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
MOSQUITTO_HASH_BYTES = 64
HASH_PREFIX = "$7$"

CABINET_PUBLISH_CHANNELS = (Channel.SALES, Channel.EVENTS, Channel.TELEMETRY, Channel.STATUS)
CABINET_SUBSCRIBE_CHANNELS = (Channel.COMMANDS, Channel.ACKS)


def generate_broker_password() -> str:
    """Return a random broker password: 32 URL-safe characters (24 random bytes)."""
    return secrets.token_urlsafe(24)


def mosquitto_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_PBKDF2_ITERATIONS
) -> str:
    """Return the ``$7$`` hash of ``password`` for a Mosquitto password file."""
    if salt is None:
        salt = secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, MOSQUITTO_HASH_BYTES
    )
    encoded_salt = base64.b64encode(salt).decode("ascii")
    encoded_hash = base64.b64encode(derived).decode("ascii")
    return f"{HASH_PREFIX}{iterations}${encoded_salt}${encoded_hash}"


def verify_mosquitto_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches a ``$7$`` hash. A malformed hash never matches."""
    parts = password_hash.split("$")
    # "$7$101$salt$hash".split("$") == ["", "7", "101", "salt", "hash"]
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (binascii.Error, ValueError):
        return False
    derived = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, int(parts[2]), len(expected)
    )
    return hmac.compare_digest(derived, expected)


def password_file_line(username: str, password_hash: str) -> str:
    """Return one line of a Mosquitto password file, without the newline."""
    if ":" in username or "\n" in username:
        raise ValueError(f"broker username {username!r} must not contain ':' or a newline")
    return f"{username}:{password_hash}"


def cabinet_acl_entries(kiosk_id: str) -> str:
    """Return the ACL section of one cabinet: its ``user`` line and its topics."""
    lines = [f"user {kiosk_id}"]
    lines += [f"topic write {kiosk_topic(kiosk_id, ch)}" for ch in CABINET_PUBLISH_CHANNELS]
    lines += [f"topic read {kiosk_topic(kiosk_id, ch)}" for ch in CABINET_SUBSCRIBE_CHANNELS]
    return "\n".join(lines) + "\n"


def service_acl_entries(username: str) -> str:
    """Return the ACL section of the server's account, which reads and writes every cabinet."""
    return f"user {username}\ntopic readwrite {TOPIC_ROOT}/#\n"


def acl_file_text(service_username: str, kiosk_ids: Iterable[str]) -> str:
    """Return a whole ACL file: the server's account first, then one section per cabinet."""
    sections = [
        "# Mosquitto ACL of the zhigui fleet, written by `fleet-server broker-config`.\n"
        "# Each cabinet publishes and subscribes only under its own kiosk id.\n",
        service_acl_entries(service_username),
    ]
    sections += [cabinet_acl_entries(kiosk_id) for kiosk_id in kiosk_ids]
    return "\n".join(sections)
