"""Logging set-up: secrets-bearing loggers never at DEBUG, chatty ones quiet unless debugging."""

import logging

import pytest

from fluidos_sensors.logs import BODY_LOGGERS, CHATTY_LOGGERS, setup_logging


@pytest.fixture(autouse=True)
def _restore_levels():
    names = (*BODY_LOGGERS, *CHATTY_LOGGERS)
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_debug_never_reaches_the_loggers_of_request_bodies() -> None:
    setup_logging("debug")
    for name in BODY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO
    for name in CHATTY_LOGGERS:
        assert logging.getLogger(name).level == logging.DEBUG


def test_info_quiets_the_chatty_loggers() -> None:
    setup_logging(logging.INFO)
    for name in CHATTY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
    setup_logging("ERROR")
    for name in BODY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.ERROR


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'loud' is none of CRITICAL, DEBUG"):
        setup_logging("loud")
