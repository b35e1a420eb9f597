"""Kubernetes API coordinates, label and annotation keys shared by every part.

One definition each: import these, never spell a group, version or key again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """A custom resource kind as the API server serves it."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


# KubeEdge (CRDs mirrored from kubeedge/kubeedge build/crds, v1.23).
KUBEEDGE_DEVICES_GROUP = "devices.kubeedge.io"
DEVICE = Resource(KUBEEDGE_DEVICES_GROUP, "v1beta1", "devices", "Device")
DEVICE_V1ALPHA2 = Resource(KUBEEDGE_DEVICES_GROUP, "v1alpha2", "devices", "Device")
DEVICE_MODEL = Resource(KUBEEDGE_DEVICES_GROUP, "v1beta1", "devicemodels", "DeviceModel")
DEVICE_STATUS = Resource(KUBEEDGE_DEVICES_GROUP, "v1beta1", "devicestatuses", "DeviceStatus")
RULE = Resource("rules.kubeedge.io", "v1", "rules", "Rule")
RULE_ENDPOINT = Resource("rules.kubeedge.io", "v1", "ruleendpoints", "RuleEndpoint")

# Kubernetes Events as the events.k8s.io group serves them (the same objects as core/v1 Events).
EVENT = Resource("events.k8s.io", "v1", "events", "Event")

# FLUIDOS node (CRDs mirrored from the FLUIDOS edge-support branch).
FLAVOR = Resource("nodecore.fluidos.eu", "v1alpha1", "flavors", "Flavor")
SOLVER = Resource("nodecore.fluidos.eu", "v1alpha1", "solvers", "Solver")
ALLOCATION = Resource("nodecore.fluidos.eu", "v1alpha1", "allocations", "Allocation")
RESERVATION = Resource("reservation.fluidos.eu", "v1alpha1", "reservations", "Reservation")
TRANSACTION = Resource("reservation.fluidos.eu", "v1alpha1", "transactions", "Transaction")
CONTRACT = Resource("reservation.fluidos.eu", "v1alpha1", "contracts", "Contract")

# This project's own CRDs (the chart's files/crds/), one group for all of them.
SENSORS_GROUP = "sensors.fluidos.eu"
SENSOR_ROUTE = Resource(SENSORS_GROUP, "v1alpha1", "sensorroutes", "SensorRoute")
SENSOR_REQUEST = Resource(SENSORS_GROUP, "v1alpha1", "sensorrequests", "SensorRequest")
SENSOR_PROVIDER = Resource(SENSORS_GROUP, "v1alpha1", "sensorproviders", "SensorProvider")
OWN_RESOURCES = (SENSOR_ROUTE, SENSOR_REQUEST, SENSOR_PROVIDER)

# Where a provider keeps things (namespaces). Flavors, Transactions, Contracts and Allocations
# live in the FLUIDOS node's namespace; SensorRoutes and the Secrets holding consumers'
# delivery credentials live in their own, so edge agents can read those credentials without
# reading anything else of the FLUIDOS node.
FLUIDOS_NAMESPACE = "fluidos"
ROUTE_NAMESPACE = "fluidos-routes"
# Where Devices live in the systems we interoperate with: KubeEdge's samples put them in
# "default", FLUIDOS's edge samples (and its node's Helm install) in "fluidos".
DEVICE_NAMESPACES = ("default", FLUIDOS_NAMESPACE)

# Node roles, as FLUIDOS labels them.
EDGE_WORKER_LABEL = "node-role.fluidos.eu/sensors"
RESOURCE_WORKER_LABEL = "node-role.fluidos.eu/resources"
ROLE_LABEL_VALUE = "true"

# FLUIDOS edge convention: base64 of a JSON array describing the Device's sensors.
SENSORS_ANNOTATION = "sensors"

# Everything this project creates carries these labels, so it can find (and clean up) its own.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "fluidos-sensors"
FLAVOR_TYPE_SENSOR = "Sensor"
