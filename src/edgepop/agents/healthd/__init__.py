"""healthd: withdraws an anycast service's routes through BIRD while the service is unhealthy,
restarts it, and announces it again once it has proved itself (see docs/healthd.md)."""
