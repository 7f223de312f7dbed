"""provisiond: PXE/iPXE and image server, call-home endpoint and image sync of a PoP's control server."""
