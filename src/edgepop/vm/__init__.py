"""qemu guests for proofs that need a real kernel (bonding, NIC queue interrupts): `qemu` boots and
drives one guest, `links` cables guests together point to point."""
