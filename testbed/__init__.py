"""Multi-cluster testbed: real etcd + kube-apiserver per cluster on loopback, edge processes."""
