"""The lab: a PoP inventory run as podman containers on one machine."""
