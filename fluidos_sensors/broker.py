"""How to reach an edge node's MQTT broker, and the mosquitto files that protect it.

Each client role has its own user and password on the broker, and the broker's ACL
(deploy/helm/fluidos-sensors/files/mosquitto/acl) says what each may do: the mapper
(`MAPPER_USER`) only publishes readings, the edge agent (`AGENT_USER`) only reads them. A
credentials file is JSON `{"host", "port", "username", "password"}`, mode 0600, one per role;
each process is given its own role's file, the broker gets a hashed password file of all.

Shared plumbing of the edge: the mapper publishes to the broker, the edge agent reads from it,
the testbed and the Helm chart run it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from fluidos_sensors.files import write_json_atomic

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
# The broker users, named as the ACL file names them (a unit test holds the two together).
MAPPER_USER = "mapper"
AGENT_USER = "agent"
BROKER_USERS = (MAPPER_USER, AGENT_USER)
USERNAME_ENV = "FLUIDOS_SENSORS_MQTT_USERNAME"
PASSWORD_ENV = "FLUIDOS_SENSORS_MQTT_PASSWORD"
# mosquitto_passwd's default since mosquitto 2.0: PBKDF2-SHA512, 101 rounds, 12-byte salt.
_PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12


class BrokerConfigError(ValueError):
    """A credentials file that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class BrokerAccess:
    """Address and credentials of an MQTT broker. The password never appears in repr."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # PEM CA file: connect with TLS and check the broker's certificate against it (the Helm
    # chart's mapper reaches its node's broker over the pod network, never in clear).
    ca: str | None = None

    def __str__(self) -> str:
        who = f"{self.username}@" if self.username else ""
        return f"mqtt://{who}{self.host}:{self.port}"

    @classmethod
    def load(cls, path: Path) -> BrokerAccess:
        """Read a credentials file (host and port are optional in it)."""
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise BrokerConfigError(f"{path}: cannot read: {err.strerror}") from None
        except ValueError as err:
            raise BrokerConfigError(f"{path}: not JSON: {err}") from None
        if not isinstance(data, dict):
            raise BrokerConfigError(f"{path}: must hold a JSON object")
        for key in ("host", "username", "password", "ca"):
            if key in data and not isinstance(data[key], str):
                raise BrokerConfigError(f'{path}: "{key}" must be a string')
        port = data.get("port", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise BrokerConfigError(f'{path}: "port" must be a TCP port number, got {port!r}')
        return cls(
            host=data.get("host", DEFAULT_HOST),
            port=port,
            username=data.get("username"),
            password=data.get("password"),
            ca=data.get("ca"),
        )

    def save(self, path: Path) -> None:
        """Write the credentials file, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
        }
        if self.ca:
            body["ca"] = self.ca
        write_json_atomic(path, body, mode=0o600)

    def with_overrides(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> BrokerAccess:
        """A copy with the given (non-None) fields replaced."""
        changes: dict[str, object] = {
            k: v
            for k, v in {
                "host": host,
                "port": port,
                "username": username,
                "password": password,
            }.items()
            if v is not None
        }
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def generate(cls, host: str, port: int, username: str) -> BrokerAccess:
        """Fresh credentials with a random password."""
        return cls(host, port, username, secrets.token_urlsafe(24))


def broker_access(credentials: Path | None, host: str | None, port: int | None) -> BrokerAccess:
    """The broker from the credentials file, then the environment, then the options."""
    access = BrokerAccess.load(credentials) if credentials else BrokerAccess()
    return access.with_overrides(
        host=host,
        port=port,
        username=os.environ.get(USERNAME_ENV),
        password=os.environ.get(PASSWORD_ENV),
    )


def mosquitto_password_entry(username: str, password: str, salt: bytes | None = None) -> str:
    """One line of a mosquitto password file, hashed as `mosquitto_passwd` does."""
    if ":" in username:
        raise ValueError("an MQTT username for mosquitto cannot contain ':'")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$7${_PBKDF2_ITERATIONS}${encoded[0]}${encoded[1]}"


# Readings a persistent-session subscriber (the edge agent) may have waiting at the broker
# while it is away; at 1000 readings/s that is over a minute and a half.
QUEUED_MESSAGES_MAX = 100_000
INFLIGHT_MESSAGES_MAX = 1000


def mosquitto_config(
    port: int,
    password_file: Path,
    run_as: str,
    host: str = DEFAULT_HOST,
    persistence_dir: Path | None = None,
    acl_file: Path | None = None,
) -> str:
    """A mosquitto.conf: one authenticated listener on `host` only.

    With `persistence_dir`, queued QoS 1 readings and persistent sessions survive a broker
    restart (saved at shutdown and every few seconds). With `acl_file`, each user may do only
    what that file allows it (and a user it does not name, nothing).
    """
    persistence = (
        ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 5"]
        if persistence_dir is not None
        else ["persistence false"]
    )
    return "\n".join(
        [
            f"listener {port} {host}",
            "allow_anonymous false",
            f"password_file {password_file}",
            *([f"acl_file {acl_file}"] if acl_file is not None else []),
            # Started as root, mosquitto would switch to its own user and lose access to the
            # 0600 password file; run as whoever starts it.
            f"user {run_as}",
            *persistence,
            f"max_queued_messages {QUEUED_MESSAGES_MAX}",
            # Unacknowledged readings in flight to one client: the agent acknowledges a batch
            # once stored, so a window of one is far too small.
            f"max_inflight_messages {INFLIGHT_MESSAGES_MAX}",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            "",
        ]
    )


def write_password_file(path: Path, *accesses: BrokerAccess) -> None:
    """The broker side of `accesses`: a 0600 password file with each one's hashed password."""
    lines = []
    for access in accesses:
        if not access.username or access.password is None:
            raise ValueError("a password file needs a username and a password")
        lines.append(mosquitto_password_entry(access.username, access.password) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(lines))


def acl_users(acl: str) -> dict[str, list[tuple[str, str]]]:
    """The (access, topic) rules of each user of a mosquitto ACL file's text."""
    users: dict[str, list[tuple[str, str]]] = {}
    rules: list[tuple[str, str]] | None = None
    for line in acl.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user" and len(words) == 2:
            rules = users.setdefault(words[1], [])
        elif words[0] == "topic" and rules is not None:
            access, topic = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
            rules.append((access, topic))
        else:
            raise ValueError(f"ACL line not understood here: {line.strip()!r}")
    return users
