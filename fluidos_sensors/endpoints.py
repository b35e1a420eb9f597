"""Delivery endpoints: which URLs readings may be sent to, and how they appear in logs.

One check for every part that takes a consumer's URL (the REAR purchase, the CLI, the edge
agent): http or https, a valid host, no credentials in the URL (they come from a Secret and
must never be echoed), no fragment, no control characters, bounded length, and optionally a
host allowlist the provider configures. `DeliveryPolicy` is the provider's per-consumer
allowlist, checked by the gateway at purchase and again by the edge agent. The delivery
formats and auth types live here too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

URL_MAX_LENGTH = 2048
SCHEMES = ("http", "https")


class DeliveryFormat(StrEnum):
    """How readings are encoded for a consumer's endpoint."""

    INFLUX = "influx"  # InfluxDB line protocol: Telegraf http_listener_v2, InfluxDB write APIs
    JSON = "json"  # an array of readings as the mapper publishes them
    # CloudEvents 1.0 over HTTP. Structured mode, one event per request: what every
    # CloudEvents receiver takes (Knative brokers take no batches).
    CLOUDEVENTS = "cloudevents"
    # Batch mode: a JSON array of events per request (application/cloudevents-batch+json).
    CLOUDEVENTS_BATCH = "cloudevents-batch"


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


# ------------------------------------------------------------------------------ policy

POLICY_ANY = "*"
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")  # a label inet_aton reads as a number
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def _policy_entry(entry: str) -> str:
    """An entry normalised (lower case, CIDRs in network form); EndpointError saying why not."""
    entry = entry.strip().lower().rstrip(".")
    if entry == POLICY_ANY:
        return entry
    if "/" in entry:
        try:
            return str(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise EndpointError(f"{entry!r} is not a valid CIDR") from None
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        pass
    name = entry[2:] if entry.startswith("*.") else entry
    if not name or not _valid_host(name) or _NUMERIC_HOST.match(name.rsplit(".", 1)[-1]):
        raise EndpointError(
            f"{entry!r} is not a host name, *.domain, IP address, CIDR or {POLICY_ANY!r}"
        )
    return entry


@dataclass(frozen=True)
class DeliveryPolicy:
    """Where one consumer may have its readings delivered, as the provider allows it.

    Entries: a host name (exactly that name), ``*.domain`` (any name under it), an IP address
    or CIDR (URLs whose host is an address in it), or ``*`` (any host name, and any public
    address). Loopback, private, link-local and other non-public addresses are refused unless an
    address or CIDR entry names them, even with ``*``. Host names are matched as written and
    never resolved: resolving at purchase proves nothing about where a later connection goes
    (DNS can change), so a provider names the hosts it trusts instead. An empty policy allows
    nothing.
    """

    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> tuple[DeliveryPolicy, list[str]]:
        """A policy from comma- or whitespace-separated entries, and the problems of the bad
        ones (left out, so a typo narrows the policy, never widens it)."""
        entries: list[str] = []
        problems: list[str] = []
        for raw in re.split(r"[\s,]+", text or ""):
            if not raw:
                continue
            try:
                entry = _policy_entry(raw)
            except EndpointError as exc:
                problems.append(str(exc))
                continue
            if entry not in entries:
                entries.append(entry)
        return cls(tuple(entries)), problems

    def union(self, other: DeliveryPolicy) -> DeliveryPolicy:
        return DeliveryPolicy((*self.entries, *(e for e in other.entries if e not in self.entries)))

    def text(self) -> str:
        """The policy as ``parse`` reads it back (comma-separated)."""
        return ",".join(self.entries)

    def check(self, url: object) -> str:
        """The URL if this policy allows delivering to it; EndpointError naming the rule."""
        url = check_endpoint_url(url)
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not self.entries:
            raise EndpointError(
                "is refused by the delivery policy: the provider allows this consumer no "
                "delivery endpoint"
            )
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            address = None
        if address is None:
            return self._check_name(url, host)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        for entry in self.entries:
            if _is_address(entry) and address in ipaddress.ip_network(entry, strict=False):
                return url
        if not address.is_global:
            raise EndpointError(
                f"is refused by the delivery policy: {address} is not a public address "
                f"({_address_kind(address)}); private, loopback and link-local addresses need an "
                "address or CIDR entry in the consumer's policy"
            )
        if POLICY_ANY in self.entries:
            return url
        raise EndpointError(f"is refused by the delivery policy: {address} is not in it")

    def _check_name(self, url: str, host: str) -> str:
        if _NUMERIC_HOST.match(host.rsplit(".", 1)[-1]):
            # "127.1" or "0x7f000001" is an address to a resolver: never a name to match.
            raise EndpointError(
                f"is refused by the delivery policy: {host!r} is a numeric host that is not "
                "a canonical IP address"
            )
        for entry in self.entries:
            if entry == host or (
                entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]
            ):
                return url
        local = host in _LOCAL_NAMES or host.endswith(".localhost")
        if POLICY_ANY in self.entries and not local:
            return url
        raise EndpointError(
            f"is refused by the delivery policy: host {host!r} is not in it (host names are "
            "matched as written, never resolved)"
        )


def _is_address(entry: str) -> bool:
    if entry == POLICY_ANY or entry.startswith("*."):
        return False
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return False


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
