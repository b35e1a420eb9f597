"""The provider's REAR gateway: consumers list, reserve and buy Sensor flavors over HTTP.

``app`` (FastAPI routes) -> ``market`` (the rules of reserve/purchase/release) -> ``store``
(Kubernetes I/O) and ``index`` (Flavors in memory, fed by ``watch``); ``objects`` builds and
reads the FLUIDOS objects, ``auth`` knows the consumers' tokens. ``cli`` runs it with uvicorn.
"""
