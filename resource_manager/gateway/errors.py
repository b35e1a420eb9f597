"""Errors the gateway answers with: an HTTP status, a message and, for bad input, the field."""

from __future__ import annotations


class GatewayError(Exception):
    """A request cannot be served; becomes ``{"error": message, "field": field}``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class Unavailable(GatewayError):
    """The Kubernetes API server cannot be reached or is overloaded (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


def not_found(what: str, field: str | None = None) -> GatewayError:
    return GatewayError(404, f"{what} not found", field)


def forbidden(message: str, field: str | None = None) -> GatewayError:
    return GatewayError(403, message, field)


def conflict(message: str, field: str | None = None) -> GatewayError:
    return GatewayError(409, message, field)


def bad_input(message: str, field: str | None = None) -> GatewayError:
    return GatewayError(400, message, field)
