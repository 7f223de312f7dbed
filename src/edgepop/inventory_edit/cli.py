"""`edgepop inventory ...` subcommands."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("inventory", help="edit an inventory in place (add-server, set-weight, adopt, remove-server)")
