"""Delivery endpoints: which URLs readings may be sent to, and how they appear in logs.

One check for every part that takes a consumer's URL (the REAR purchase, the CLI, the edge
agent): http or https, a host, no credentials in the URL (they come from a Secret and must
never be echoed), no fragment, no control characters, bounded length, and optionally a host
allowlist the provider configures.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

URL_MAX_LENGTH = 2048
SCHEMES = ("http", "https")


class EndpointError(ValueError):
    """A URL that readings may not be sent to; the message says why (without credentials)."""


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
    """The URL, stripped, if readings may be POSTed there; EndpointError says why not.

    ``allowed_hosts`` (empty: any host) holds exact hosts, ``*.suffix`` patterns or CIDRs.
    """
    if not isinstance(url, str):
        raise EndpointError(f"must be a string URL, got {type(url).__name__}")
    url = url.strip()
    if len(url) > URL_MAX_LENGTH:
        raise EndpointError(f"is longer than {URL_MAX_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise EndpointError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise EndpointError(f"is not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f'"{scheme}"' if scheme else "none"
        raise EndpointError(f"scheme {shown} is not allowed: use http or https")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(
            "must not carry credentials (user:password@); give them as an authorization "
            "secret instead"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointError("has no host")
    if port == 0:
        raise EndpointError("port 0 is not a port")
    if parts.fragment:
        raise EndpointError("must not have a #fragment")
    allowed = list(allowed_hosts)
    if allowed and not _host_allowed(host, allowed):
        raise EndpointError(f'host "{host}" is not in the allowed hosts')
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
