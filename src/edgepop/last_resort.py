"""The one place a bug meets the operator: one line and EX_SOFTWARE, or the traceback on request.

Every command line of the project (`edgepop` and each agent) runs its body through `last_resort`, so
an exception nobody handled never prints a stack trace an operator has to read (it may also carry
input values), yet `--debug` gives a developer the whole trace.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence


def last_resort(prog: str, argv: Sequence[str] | None, body: Callable[[], int]) -> int:
    """Run a command line's body; a bug (any exception nobody handled) becomes one line on stderr and
    EX_SOFTWARE (70), or the whole traceback with `--debug`. Ctrl-C and sys.exit pass through."""
    try:
        return body()
    except Exception as exc:
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        if debug:
            traceback.print_exc(file=sys.stderr)
        else:
            message = " ".join(str(exc).split())
            print(
                f"{prog}: internal error: {type(exc).__name__}: {message} (run with --debug for the traceback)",
                file=sys.stderr,
            )
        return os.EX_SOFTWARE
