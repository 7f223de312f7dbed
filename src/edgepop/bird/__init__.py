"""Talking to BIRD: parsing its CLI output (and, for the agents, its control socket)."""
