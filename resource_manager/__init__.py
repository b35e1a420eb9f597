"""Provider control plane: Nodes + KubeEdge Devices -> FLUIDOS Sensor Flavors (kopf)."""
