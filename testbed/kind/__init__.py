"""KIND mode of the testbed: a Docker engine that can run kind's privileged node containers,
an offline kind node image built from Debian packages and the Go module proxy, and clusters."""
