"""A consumer's CloudEvents receiver: events over HTTP -> points in the consumer's InfluxDB.

Telegraf has no CloudEvents input, so the testbed gives each consumer this receiver next to its
Telegraf. It is written against the CloudEvents SDK's parser, as a consumer's own service
would be. It takes structured mode (`application/cloudevents+json`) and batch mode
(`application/cloudevents-batch+json`, an array of structured events, which the SDK does not
parse as a whole). Each event becomes one point, with the same measurement, tags and fields
the line protocol delivery writes:

- measurement: the quantity, the event's `type` after ``eu.fluidos.sensors.``;
- tags: the provider, node and device from its `source`, the sensor from its `subject`, the
  unit;
- fields: the values, `seq` and `device_time`;
- time: the event's `time`.

A redelivered event lands on the same series and time, so InfluxDB keeps it once. Basic auth
with the consumer's delivery credentials. An event that cannot be read answers 400 naming
what is wrong; when InfluxDB does not answer, the reply is 503, so the edge agent retries.

    python -m testbed.cloudevents_sink --listen 127.0.0.1:PORT --credentials FILE \
        --influx-url URL --influx-token-file FILE --bucket DB/RP
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import uvicorn
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS

from router_manager.encoding import (
    CLOUDEVENT_BATCH_CONTENT_TYPE,
    CLOUDEVENT_CONTENT_TYPE,
    CLOUDEVENT_TYPE_PREFIX,
)

log = logging.getLogger(__name__)

PATH = "/events"
TYPE_PREFIX = CLOUDEVENT_TYPE_PREFIX
STRUCTURED = CLOUDEVENT_CONTENT_TYPE
BATCH = CLOUDEVENT_BATCH_CONTENT_TYPE
_TAG_OF_PART = {"providers": "provider", "nodes": "node", "devices": "device"}


class EventError(ValueError):
    """An event this receiver cannot store; the message says which attribute."""


def read_events(content_type: str, body: bytes) -> list[CloudEvent]:
    """The events of one request, read with the SDK's parser (batch: item by item)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == BATCH:
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise EventError(f"batch body is not JSON: {exc}") from None
        if not isinstance(items, list):
            raise EventError("a batch body must be a JSON array of events")
        bodies = [json.dumps(item).encode() for item in items]
    elif kind == STRUCTURED:
        bodies = [body]
    else:
        raise EventError(f"Content-Type must be {STRUCTURED} or {BATCH}, got {kind or 'none'}")
    events = []
    for index, one in enumerate(bodies):
        try:
            event = from_http(HTTPMessage({"content-type": STRUCTURED}, one), JSONFormat())
        except Exception as exc:  # the SDK raises several kinds for a bad event
            raise EventError(f"event {index}: {exc}") from None
        if not isinstance(event, CloudEvent):
            raise EventError(f"event {index}: not a CloudEvents 1.0 event")
        events.append(event)
    return events


def event_point(event: CloudEvent) -> Point:
    """The InfluxDB point of a sensor reading's event; EventError names the attribute."""
    kind = event.get_type()
    if not kind.startswith(TYPE_PREFIX) or kind == TYPE_PREFIX:
        raise EventError(f"type must start with {TYPE_PREFIX}, got {kind!r}")
    data = event.get_data()
    if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
        raise EventError("data must be an object with values")
    point = Point(kind[len(TYPE_PREFIX) :])
    for tag, value in source_tags(event.get_source()).items():
        point.tag(tag, value)
    point.tag("sensor", event.get_subject() or "")
    if isinstance(data.get("unit"), str) and data["unit"]:
        point.tag("unit", data["unit"])
    fields = 0
    for name, value in data["values"].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            point.field(str(name), float(value))
            fields += 1
    if not fields:
        raise EventError("data.values holds no number")
    if isinstance(data.get("seq"), int):
        point.field("seq", data["seq"])
    if isinstance(data.get("deviceTime"), int | float):
        point.field("device_time", float(data["deviceTime"]))
    time = event.get_time()
    if time is None:
        raise EventError("time is required: it is the reading's time")
    point.time(time)
    return point


def source_tags(source: str) -> dict[str, str]:
    """provider, node and device from ``/providers/P/nodes/N/namespaces/NS/devices/D``."""
    parts = source.strip("/").split("/")
    tags: dict[str, str] = {}
    for kind, name in zip(parts[::2], parts[1::2], strict=False):
        if kind in _TAG_OF_PART:
            tags[_TAG_OF_PART[kind]] = unquote(name)
    if "device" not in tags:
        raise EventError(f"source must name the device (/devices/D), got {source!r}")
    return tags


def make_app(username: str, password: str, influx: InfluxDBClient, bucket: str) -> FastAPI:
    """The receiver's HTTP API, writing to `bucket` of `influx`."""
    app = FastAPI(title="fluidos-sensors CloudEvents receiver", docs_url=None, redoc_url=None)
    basic = HTTPBasic()
    writer = influx.write_api(write_options=SYNCHRONOUS)

    # A default, not Annotated[..., Depends(basic)]: FastAPI resolves string annotations
    # (this module's `from __future__`) in the module's globals, where `basic` is not.
    def authorised(credentials: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008
        user_ok = secrets.compare_digest(credentials.username.encode(), username.encode())
        password_ok = secrets.compare_digest(credentials.password.encode(), password.encode())
        if not (user_ok and password_ok):
            raise HTTPException(401, "wrong credentials", {"WWW-Authenticate": "Basic"})

    @app.post(PATH, status_code=204, dependencies=[Depends(authorised)])
    async def receive(request: Request) -> Response:
        try:
            events = read_events(request.headers.get("content-type", ""), await request.body())
            points = [event_point(event) for event in events]
        except EventError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            await asyncio.to_thread(writer.write, bucket=bucket, record=points)
        except Exception as exc:
            log.warning("InfluxDB did not take %d point(s): %s", len(points), exc)
            raise HTTPException(503, "InfluxDB unavailable; send again") from None
        return Response(status_code=204)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--credentials", type=Path, required=True, help="JSON {username, password}")
    parser.add_argument("--influx-url", required=True)
    parser.add_argument("--influx-token-file", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    credentials: dict[str, Any] = json.loads(args.credentials.read_text())
    host, _, port = args.listen.rpartition(":")
    token = args.influx_token_file.read_text().strip()
    with InfluxDBClient(url=args.influx_url, token=token, org="-") as influx:
        app = make_app(credentials["username"], credentials["password"], influx, args.bucket)
        uvicorn.run(app, host=host, port=int(port), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
