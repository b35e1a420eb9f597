"""Textual terminal UI over flavors, routes, requests and devices of several clusters."""
