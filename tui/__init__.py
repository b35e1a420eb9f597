"""Textual terminal UI over flavors, contracts, routes and devices (not built yet)."""
