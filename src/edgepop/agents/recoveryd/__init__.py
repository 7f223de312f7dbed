"""recoveryd: power-cycles a PoP server that has died (IPMI first, then its PDU outlet) and lets its
routes back only after it verifies clean (see docs/recovery.md)."""
