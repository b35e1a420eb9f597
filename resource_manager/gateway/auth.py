"""Who is calling: bearer tokens of the provider's REAR consumers, read from Secrets.

A consumer is a Secret in the gateway's namespace labeled ``REAR_CONSUMER_LABEL=<consumer id>``
with its token under ``CONSUMER_TOKEN_KEY``; the gateway watches them, so adding, rotating or
removing a consumer needs no restart. Several Secrets may name the same consumer (rotation).
Tokens are compared in constant time and never logged.

The same Secret carries where the consumer may have data delivered: annotation
``DELIVERY_POLICY_ANNOTATION`` (``endpoints.DeliveryPolicy``); a consumer with several Secrets
may deliver where any of them allows. No annotation: nowhere (the provider must say).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from fluidos_sensors.contract import DELIVERY_POLICY_ANNOTATION
from fluidos_sensors.endpoints import DeliveryPolicy
from fluidos_sensors.rear.wire import CONSUMER_TOKEN_KEY, REAR_CONSUMER_LABEL

log = logging.getLogger("resource_manager.gateway.auth")

_SCHEME = "bearer"
MIN_TOKEN_LENGTH = 16


class ConsumerTokens:
    """Consumer id by token, kept from the consumers' Secrets. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Secret name -> (consumer id, SHA-256 of its token). Digests have one length, so the
        # constant-time comparison does not leak a token's length either.
        self._by_secret: dict[str, tuple[str, bytes]] = {}
        self._policies: dict[str, DeliveryPolicy] = {}  # Secret name -> its delivery policy

    def upsert(self, secret: Mapping[str, Any]) -> None:
        """Learn (or update) a consumer from its Secret (as a watch gives it, data in base64)."""
        meta = secret.get("metadata") or {}
        name = str(meta.get("name") or "")
        consumer = (meta.get("labels") or {}).get(REAR_CONSUMER_LABEL)
        raw = (secret.get("data") or {}).get(CONSUMER_TOKEN_KEY)
        token = _decode(raw)
        if not consumer or token is None or len(token) < MIN_TOKEN_LENGTH:
            log.warning(
                'Secret %s: not a usable REAR consumer (needs label "%s" and a "%s" of at least '
                "%d characters)",
                name,
                REAR_CONSUMER_LABEL,
                CONSUMER_TOKEN_KEY,
                MIN_TOKEN_LENGTH,
            )
            self.delete(secret)
            return
        raw_policy = (meta.get("annotations") or {}).get(DELIVERY_POLICY_ANNOTATION)
        policy, problems = DeliveryPolicy.parse(raw_policy if isinstance(raw_policy, str) else "")
        for problem in problems:
            log.warning(
                'Secret %s: annotation "%s": entry %s left out',
                name,
                DELIVERY_POLICY_ANNOTATION,
                problem,
            )
        with self._lock:
            known = name in self._by_secret
            self._by_secret[name] = (consumer, hashlib.sha256(token).digest())
            self._policies[name] = policy
        if not known:
            log.info("REAR consumer %s enabled (Secret %s)", consumer, name)

    def delete(self, secret: Mapping[str, Any]) -> None:
        name = str((secret.get("metadata") or {}).get("name") or "")
        with self._lock:
            gone = self._by_secret.pop(name, None)
            self._policies.pop(name, None)
        if gone:
            log.info("REAR consumer %s disabled (Secret %s)", gone[0], name)

    def replace(self, secrets: Iterable[Mapping[str, Any]]) -> None:
        secrets = list(secrets)
        names = {str((s.get("metadata") or {}).get("name") or "") for s in secrets}
        with self._lock:
            stale = [name for name in self._by_secret if name not in names]
        for name in stale:
            self.delete({"metadata": {"name": name}})
        for secret in secrets:
            self.upsert(secret)

    def consumers(self) -> set[str]:
        with self._lock:
            return {consumer for consumer, _ in self._by_secret.values()}

    def policy_for(self, consumer: str) -> DeliveryPolicy:
        """Where `consumer` may have data delivered: what any of its Secrets allows."""
        policy = DeliveryPolicy()
        with self._lock:
            for name, (owner, _) in self._by_secret.items():
                if owner == consumer:
                    policy = policy.union(self._policies.get(name, DeliveryPolicy()))
        return policy

    def consumer_for(self, authorization: str | None) -> str | None:
        """The consumer an ``Authorization: Bearer <token>`` header proves, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != _SCHEME or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode()).digest()
        with self._lock:
            known = list(self._by_secret.values())
        found = None
        for consumer, expected in known:  # no early exit: time does not depend on the match
            if hmac.compare_digest(digest, expected):
                found = consumer
        return found


def _decode(raw: object) -> bytes | None:
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).strip()
    except (binascii.Error, ValueError):
        return None
