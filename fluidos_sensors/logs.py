"""Logging set-up shared by every long-running command (operators, gateway, agent, mapper)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Log request and answer bodies at DEBUG, and those carry Secrets (consumers' tokens,
# delivery credentials): never below INFO, whatever the level asked for.
BODY_LOGGERS = ("kubernetes", "urllib3")
# One line per handler run (kopf) or per request (httpx) at INFO: quiet unless debugging, so
# that a healthy steady state logs nothing.
CHATTY_LOGGERS = ("kopf", "httpx")


def setup_logging(level: int | str) -> None:
    """Configure the root logger at `level` (a number or a name such as "info").

    Raises ValueError, naming the choices, for a name that is not a level.
    """
    if isinstance(level, str):
        names = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        if level.upper() not in names:
            raise ValueError(f"log level {level!r} is none of {', '.join(sorted(names))}")
        level = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(level=level, format=FORMAT)
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if level > logging.DEBUG else level)


def setup_verbosity(verbose: bool) -> None:
    """Logging of a command with `--verbose`: DEBUG when given, else INFO."""
    setup_logging(logging.DEBUG if verbose else logging.INFO)
