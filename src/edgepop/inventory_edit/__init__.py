"""Operator edits of an inventory in place: comments, key order and formatting are preserved."""
