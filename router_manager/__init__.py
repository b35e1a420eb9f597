"""Purchases -> multicast data paths, and the edge agent that delivers them (not built yet)."""
