"""Delivery endpoints: which URLs readings may be sent to, and how they appear in logs.

One check for every part that takes a consumer's URL (the REAR purchase, the CLI, the edge
agent): http or https, a valid host, no credentials in the URL (they come from a Secret and
must never be echoed), no fragment, no control characters, bounded length, and optionally a
host allowlist the provider configures. The delivery formats and auth types live here too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

URL_MAX_LENGTH = 2048
SCHEMES = ("http", "https")


class DeliveryFormat(StrEnum):
    """How readings are encoded for a consumer's endpoint."""

    INFLUX = "influx"  # InfluxDB line protocol: Telegraf http_listener_v2, InfluxDB write APIs
    JSON = "json"  # an array of readings as the mapper publishes them


class AuthType(StrEnum):
    """How the provider authenticates to a consumer's endpoint."""

    BEARER = "bearer"  # Authorization: Bearer <token>
    TOKEN = "token"  # Authorization: Token <token> (InfluxDB v2)
    BASIC = "basic"  # Authorization: Basic base64(username:password)


class EndpointError(ValueError):
    """A URL that readings may not be sent to; the message says why (without credentials)."""


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253:
        return False
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and all(ch.isalnum() or ch in "-_" for ch in label)
        and not label.startswith("-")
        and not label.endswith("-")
        for label in host.rstrip(".").split(".")
    )


def _host_allowed(host: str, allowed: Iterable[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for pattern in allowed:
        pattern = pattern.strip().lower()
        if not pattern:
            continue
        if "/" in pattern and address is not None:
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                continue
        elif pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def check_endpoint_url(url: object, allowed_hosts: Iterable[str] = ()) -> str:
    """The URL if readings may be POSTed there; EndpointError says why not.

    ``allowed_hosts`` (empty: any host) holds exact hosts, ``*.suffix`` patterns or CIDRs.
    """
    if not isinstance(url, str):
        raise EndpointError(f"must be a URL string, got {type(url).__name__}")
    if not url.strip():
        raise EndpointError("must not be empty")
    if len(url) > URL_MAX_LENGTH:
        raise EndpointError(f"must be at most {URL_MAX_LENGTH} characters, got {len(url)}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise EndpointError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a non-numeric or out-of-range port
    except ValueError as err:
        raise EndpointError(f"is not a valid URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EndpointError(f"must be an http:// or https:// URL, got scheme {scheme!r}")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs and objects: they belong in a Secret.
        raise EndpointError(
            'must not carry credentials (user:password@); give them as "authorization"'
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointError("must name a host")
    if not _valid_host(host):
        raise EndpointError(f"has an invalid host {host!r}")
    if port == 0:
        raise EndpointError("must not use port 0")
    if parts.fragment:
        raise EndpointError("must not have a #fragment")
    allowed = list(allowed_hosts)
    if allowed and not _host_allowed(host, allowed):
        raise EndpointError(f"host {host!r} is not in the allowed hosts")
    return url


def redact_url(url: str) -> str:
    """The URL for logs and status: no credentials, no query values (tokens hide there)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "(invalid URL)"
    query = "&".join(f"{pair.split('=', 1)[0]}=…" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
