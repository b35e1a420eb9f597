"""Purchases -> multicast data paths (the router manager), and the edge agent that delivers
them (`agent/`). See README.md here."""
