"""What every integration test file needs: waiting for the system to get somewhere."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


def eventually(
    check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.25
) -> Any:
    """The first truthy result of `check`, polled until `timeout`; else an AssertionError
    naming `what` and the last result."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def mqtt_connect(
    user: dict | None, port: int, ca: Path | None = None, timeout: float = 30.0
) -> tuple[mqtt.Client, int]:
    """A running MQTT client on 127.0.0.1:`port` (TLS trusting `ca` when given) and the
    CONNACK's reason code, so a test sees a refusal as a value."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if user:
        client.username_pw_set(user["username"], user["password"])
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False  # the chart's certificate names the in-cluster Service
        client.tls_set_context(context)
    answer: list[int] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        answer.append(rc.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(timeout), "no CONNACK"
    return client, answer[0]
