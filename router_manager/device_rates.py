"""The sampling rates Contracts hold, written as their Devices' desired properties.

The gateway grants a rate only when no other hold in its rate group differs
(`fluidos_sensors.rates`), so the Contracts of a group agree; this module keeps, per Contract,
the rate it holds, and writes each group's rate (or removes it when no Contract holds one) as
the Device's desired property ``samplingRate.<group>``, which the edge mapper applies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import DEVICE
from fluidos_sensors.kube import REQUEST_TIMEOUT
from fluidos_sensors.rates import HeldRate, same_rate, with_desired_rate

log = logging.getLogger(__name__)

_ATTEMPTS = 5  # a Device written by someone else between our read and our patch: read again
CONTRACTS_METADATA = "contracts"  # the desired value's metadata: which Contracts hold it


def group_rate(
    holds: Mapping[str, HeldRate], device: str, group: str
) -> tuple[float | None, list[str]]:
    """The rate a rate group should run (None: no Contract holds one) and its holders.

    Holders that disagree (only Contracts made outside the gateway can) give the lowest
    Contract name's rate, so every router manager decides alike."""
    holders = sorted(
        name for name, hold in holds.items() if (hold.device, hold.group) == (device, group)
    )
    if not holders:
        return None, []
    rate = holds[holders[0]].rate_hz
    disagree = [name for name in holders if not same_rate(holds[name].rate_hz, rate)]
    if disagree:
        log.warning(
            "Device %s rate group %s: Contracts %s hold other rates than %s's; running %g Hz",
            device,
            group,
            ", ".join(disagree),
            holders[0],
            rate,
        )
    return rate, holders


class DeviceRates:
    """Rates held per Contract; writes a group's desired rate whenever its holders change."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.holds: dict[str, HeldRate] = {}  # Contract name -> the rate it holds
        self._lock = threading.Lock()
        self._unwritten: set[tuple[str, str]] = set()  # groups whose last write failed

    def hold(self, contract: str, held: HeldRate | None) -> None:
        """The Contract now holds `held` (None: no rate)."""
        with self._lock:
            previous = self.holds.get(contract)
            if previous == held and not self._unwritten:
                return
            if held is None:
                self.holds.pop(contract, None)
            else:
                self.holds[contract] = held
            touched = {(h.device, h.group) for h in (previous, held) if h is not None}
            for device, group in sorted(touched | self._unwritten):
                try:
                    self._write(device, group)
                    self._unwritten.discard((device, group))
                except ApiException as exc:  # written again at the next Contract event
                    self._unwritten.add((device, group))
                    log.warning(
                        "Device %s: rate group %s not written (%s %s)",
                        device,
                        group,
                        exc.status,
                        exc.reason,
                    )

    def release(self, contract: str) -> None:
        """The Contract is gone."""
        self.hold(contract, None)

    def _write(self, device: str, group: str) -> None:
        rate, holders = group_rate(self.holds, device, group)
        namespace, name = device.split("/", 1)
        args = (DEVICE.group, DEVICE.version, namespace, DEVICE.plural, name)
        for _ in range(_ATTEMPTS):
            try:
                current = cast(
                    dict[str, Any],
                    self.custom.get_namespaced_custom_object(
                        *args, _request_timeout=REQUEST_TIMEOUT
                    ),
                )
            except ApiException as exc:
                if exc.status == 404:
                    log.warning("Device %s is gone; its rate group %s is not set", device, group)
                    return
                raise
            properties = (current.get("spec") or {}).get("properties") or []
            metadata = {CONTRACTS_METADATA: ",".join(holders)} if holders else None
            wanted = with_desired_rate(properties, group, rate, metadata)
            if wanted == properties:
                return
            patch: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": current["metadata"]["resourceVersion"],
                },
                {"op": "add", "path": "/spec/properties", "value": wanted},
            ]
            try:
                self.custom.patch_namespaced_custom_object(
                    *args,
                    patch,
                    _content_type="application/json-patch+json",
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status in (409, 422):  # changed since we read it: again
                    continue
                raise
            if rate is None:
                log.info("Device %s: no Contract holds a rate of group %s any more", device, group)
            else:
                log.info(
                    "Device %s: rate group %s desired at %g Hz (%s)",
                    device,
                    group,
                    rate,
                    ", ".join(holders),
                )
            return
        log.warning(
            "Device %s kept changing; its rate group %s is set on the next event", device, group
        )
