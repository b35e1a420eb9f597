"""REAR v2, the FLUIDOS marketplace protocol: `wire` (paths, bodies, conversions) and
`client` (sync and async clients of a gateway)."""
