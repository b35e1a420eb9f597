"""The filter options of every command that selects sensors, defined once (issue 20.3).

`@with_filter_options` gives a typer command `--type`, `--model`, `--manufacturer`,
`--category`, `--market`, `--node` (repeatable) and `--min-`/`--max-` of `rate`, `latency`,
`accuracy`, `consumption` and `observed-latency` (`fluidos_sensors.filters.FILTER_WORDS`), plus
the old spellings, hidden; the command receives them as its `filters: FilterOptions` parameter.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from fluidos_sensors.filters import (
    FILTER_WORDS,
    LEGACY_OPTIONS,
    MATCH_FILTERS,
    FilterOptions,
    filter_options,
)

PANEL = "Filters (all must hold)"
_WHAT = {item.name: item.what for item in FILTER_WORDS}
_BOUND_HELP = {"min": "Lowest", "max": "Highest"}

Command = TypeVar("Command", bound=Callable[..., Any])


def _help(name: str, form: str) -> str:
    what = _WHAT[name]
    if form == "match":
        return f"{what[0].upper()}{what[1:]} (repeat: each must match)."
    return f"{_BOUND_HELP[form]} {what}."


def _parameters() -> list[tuple[inspect.Parameter, tuple[str, str, str]]]:
    """(typer parameter, (option, filter name, form)) for every option, legacy ones last."""
    found = []
    for option, name, form in filter_options():
        kind: Any = list[str] | None if name in MATCH_FILTERS else str | None
        info = typer.Option(option, help=_help(name, form), rich_help_panel=PANEL)
        found.append((f"filter_{option[2:].replace('-', '_')}", kind, info, (option, name, form)))
    for option, (name, form) in LEGACY_OPTIONS.items():
        info = typer.Option(option, hidden=True)
        found.append(
            (f"legacy_{option[2:].replace('-', '_')}", str | None, info, (option, name, form))
        )
    return [
        (
            inspect.Parameter(
                param,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind, info],
            ),
            spec,
        )
        for param, kind, info, spec in found
    ]


def with_filter_options(command: Command) -> Command:
    """Add the filter options to a typer command in place of its `filters` parameter."""
    signature = inspect.signature(command, eval_str=True)
    if "filters" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a `filters: FilterOptions` parameter")
    options = _parameters()

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        given: list[tuple[str, str, str, str]] = []
        for parameter, (option, name, form) in options:
            value = kwargs.pop(parameter.name)
            for text in value if isinstance(value, list) else [] if value is None else [value]:
                given.append((option, name, form, text))
        return command(**kwargs, filters=FilterOptions(tuple(given)))

    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name == "filters":
            parameters.extend(option for option, _ in options)
        else:  # keyword-only: typer passes keywords, and defaults may then come in any order
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]
