"""Broker credentials: hashed like mosquitto_passwd, stored 0600, never printed."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from fluidos_sensors.broker import (
    AGENT_USER,
    BROKER_USERS,
    MAPPER_USER,
    BrokerAccess,
    BrokerConfigError,
    acl_users,
    broker_access,
    mosquitto_config,
    mosquitto_password_entry,
    write_password_file,
)
from fluidos_sensors.topics import broker_topic
from testbed.edge import BROKER_ACL


def test_password_entry_matches_mosquitto_passwd() -> None:
    # Produced by `mosquitto_passwd -U` (mosquitto 2.0.11) for u:secret.
    salt = base64.b64decode("5a0ZqR+Ft+JClVaE")
    expected = (
        "u:$7$101$5a0ZqR+Ft+JClVaE$BVPijG4QwYzqJuYvX/KPRdpghJkvxuWtKj2ukiDx4hqdp7e0vDnryKlkHwf"
        "y/MR0Fdzn/pWgcw+BdGmPJoA5XA=="
    )
    assert mosquitto_password_entry("u", "secret", salt) == expected


def test_credentials_round_trip_owner_only_and_hidden(tmp_path: Path) -> None:
    access = BrokerAccess.generate("127.0.0.1", 18830, "fluidos-sensors")
    path = tmp_path / "mqtt" / "credentials.json"
    access.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert BrokerAccess.load(path) == access
    assert access.password and access.password not in repr(access)
    assert access.password not in str(access)
    write_password_file(tmp_path / "pw", access)
    assert stat.S_IMODE((tmp_path / "pw").stat().st_mode) == 0o600
    assert access.password not in (tmp_path / "pw").read_text()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"port": "x"}', '"port"'),
        ('{"password": 1}', '"password"'),
    ],
)
def test_bad_credentials_files_say_why(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(BrokerConfigError, match=says):
        BrokerAccess.load(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="cannot read"):
        BrokerAccess.load(tmp_path / "none.json")


def test_options_and_environment_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    BrokerAccess("10.0.0.1", 1884, "a", "b").save(path)
    monkeypatch.setenv("FLUIDOS_SENSORS_MQTT_PASSWORD", "from-env")
    access = broker_access(path, None, 1999)
    assert access == BrokerAccess("10.0.0.1", 1999, "a", "from-env")


def test_config_listens_on_loopback_and_requires_a_password(tmp_path: Path) -> None:
    text = mosquitto_config(18830, tmp_path / "pw", run_as="me")
    assert "listener 18830 127.0.0.1" in text.splitlines()
    assert "allow_anonymous false" in text.splitlines()
    assert f"password_file {tmp_path / 'pw'}" in text.splitlines()


def test_config_names_the_acl_file(tmp_path: Path) -> None:
    text = mosquitto_config(18830, tmp_path / "pw", run_as="me", acl_file=tmp_path / "acl")
    assert f"acl_file {tmp_path / 'acl'}" in text.splitlines()
    plain = mosquitto_config(18830, tmp_path / "pw", run_as="me").splitlines()
    assert not [line for line in plain if line.startswith("acl_file")]


def test_each_role_has_its_own_password_in_one_password_file(tmp_path: Path) -> None:
    mapper = BrokerAccess.generate("127.0.0.1", 18830, MAPPER_USER)
    agent = BrokerAccess.generate("127.0.0.1", 18830, AGENT_USER)
    assert mapper.password != agent.password
    write_password_file(tmp_path / "pw", mapper, agent)
    users = [line.split(":", 1)[0] for line in (tmp_path / "pw").read_text().splitlines()]
    assert users == [MAPPER_USER, AGENT_USER]


def test_the_acl_lets_the_mapper_only_publish_and_the_agent_only_read_readings() -> None:
    # The one ACL file the testbed and the Helm chart use; its users are the roles' names.
    users = acl_users(BROKER_ACL.read_text())
    assert set(users) == set(BROKER_USERS)
    assert users[MAPPER_USER] == [("write", "+/fluidos-sensors/#")]
    assert users[AGENT_USER] == [("read", "+/fluidos-sensors/#")]
    # The pattern covers every readings topic of the topic scheme.
    topic = broker_topic("default", "stwin-1", "acceleration")
    assert topic.split("/")[1:2] == ["fluidos-sensors"] and len(topic.split("/")) == 4


def test_an_acl_line_the_parser_does_not_know_is_an_error() -> None:
    with pytest.raises(ValueError, match="not understood"):
        acl_users("pattern write %u/#\n")


def test_a_ca_in_the_credentials_file_is_kept_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    BrokerAccess("mqtt.example", 8883, "mapper", "pw", ca="/etc/ca.crt").save(path)
    access = broker_access(path, None, None)
    assert access.ca == "/etc/ca.crt" and access.port == 8883
    BrokerAccess("h", 1, "u", "p").save(tmp_path / "plain.json")
    assert "ca" not in json.loads((tmp_path / "plain.json").read_text())
    path.write_text(json.dumps({"username": "u", "password": "p", "ca": 1}))
    with pytest.raises(BrokerConfigError, match='"ca" must be a string'):
        BrokerAccess.load(path)
