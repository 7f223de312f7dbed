"""The PoP data model: schema, loader and the assembled PoP object."""
