"""Secrets in the inventory are never plaintext: an inline `!vault` value or a `vault_*` reference.

The validator must run without the vault password (in CI, on a laptop), so it only checks the form
of a secret, never its value. Renderers see a placeholder unless the caller supplies real values.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

VAULT_REF_RE = re.compile(r"^\{\{\s*(vault_[A-Za-z0-9_]+)\s*\}\}$")


class VaultText(str):
    """The ciphertext of an inline `!vault |` value, as Ansible writes it with encrypt_string."""

    __slots__ = ()


def _check_secret(value: object) -> str:
    if isinstance(value, VaultText):
        if not value.lstrip().startswith("$ANSIBLE_VAULT;"):
            raise ValueError("a !vault value must start with $ANSIBLE_VAULT; (use ansible-vault encrypt_string)")
        return value
    if isinstance(value, str):
        if VAULT_REF_RE.match(value.strip()):
            return value.strip()
        raise ValueError(
            "secrets must not be plaintext: use an inline !vault value (ansible-vault encrypt_string) "
            "or a reference like '{{ vault_name }}' to a vaulted variable"
        )
    raise ValueError(f"expected a vaulted secret, got {type(value).__name__}")


Secret = Annotated[
    str,
    PlainValidator(_check_secret),
    WithJsonSchema(
        {"type": "string", "description": "inline !vault value or '{{ vault_* }}' reference; never plaintext"}
    ),
]


def vault_reference(value: str) -> str | None:
    """The variable a `{{ vault_x }}` secret points at, or None for inline ciphertext."""
    match = VAULT_REF_RE.match(value)
    return match.group(1) if match else None
