"""What the commands of every part share: the options of the long-running ones, `fail`, and
listings printed as a table, JSON or YAML (`-o`)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from fluidos_sensors.shaping import (
    AGGREGATES,
    Shaping,
    ShapingError,
    parse_aggregates,
    parse_shaping,
    parse_window,
)

Kubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        help="The cluster's kubeconfig (default: in a Pod, its service account).",
    ),
]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
ReadyFile = Annotated[
    Path | None, typer.Option("--ready-file", help="Touched once the operator has started.")
]
Liveness = Annotated[
    str | None,
    typer.Option(
        "--liveness",
        help="Serve kopf's liveness endpoint at this URL, e.g. http://0.0.0.0:8080/healthz.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG.")]


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputFormat = Annotated[Output, typer.Option("-o", "--output", help="table, json or yaml")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Say what is wrong on stderr; returns the exit to raise (2: bad usage, 1: failed)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def table(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows in aligned columns under their keys (the first row's keys, in order)."""
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    lines = ["  ".join(key.ljust(width) for key, width in widths.items())]
    lines += ["  ".join(row[key].ljust(width) for key, width in widths.items()) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def echo_listing(
    output: Output, objects: list[Any], rows: Sequence[Mapping[str, str]], *, empty: str
) -> None:
    """The listed objects as JSON or YAML, or their `rows` as a table (`empty` when none)."""
    if output is Output.JSON:
        typer.echo(json.dumps(objects, indent=2))
    elif output is Output.YAML:
        typer.echo(yaml.safe_dump(objects, sort_keys=False), nl=False)
    else:
        typer.echo(table(rows) if rows else empty)


def parse_listen(value: str, option: str = "--listen") -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as (host, port); ValueError naming `option`
    and saying why not."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{option} must be HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{option}: port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"{option}: port must be 1..65535, got {port}")
    return host, port


AggregateOption = Annotated[
    str | None,
    typer.Option(
        "--aggregate", help=f"Window aggregates instead of readings ({','.join(AGGREGATES)})."
    ),
]
WindowOption = Annotated[
    str | None, typer.Option("--window", help="The aggregates' window: 500ms, 1s, 5m...")
]
EveryOption = Annotated[
    int | None,
    typer.Option("--every", help="Downsample: only readings whose seq is a multiple of N."),
]


def shape_option(aggregate: str | None, window: str | None, every: int | None) -> Shaping | None:
    """--aggregate/--window or --every as a delivery shape; a usage error names the option."""
    if every is not None:
        if aggregate is not None or window is not None:
            raise fail("--every goes without --aggregate and --window")
        try:
            return parse_shaping({"every": every})
        except ShapingError as exc:
            raise fail(f"--every {str(exc).partition(': ')[2]}") from exc
    if (aggregate is None) != (window is None):
        raise fail("--aggregate and --window go together")
    if aggregate is None or window is None:
        return None
    try:
        names = parse_aggregates(aggregate)
    except ShapingError as exc:
        raise fail(f"--aggregate {exc}") from exc
    try:
        return parse_shaping({"aggregate": names, "windowMs": parse_window(window)})
    except ShapingError as exc:
        raise fail(f"--window {str(exc).partition(': ')[2] or exc}") from exc
