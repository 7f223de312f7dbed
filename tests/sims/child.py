"""A simulator run as a child process of the test (optionally in a network namespace): it prints
`ready` once it serves, then one line per event; the parent turns each line into a callback.

Both the virtual BMC and the PDU agent use this, so starting, the readiness wait, collecting the
child's stderr for failure messages and stopping it by PID live in one place.
"""

from __future__ import annotations

import subprocess
import threading


class SimChild:
    """Starts `argv`; waits up to `ready_s` for its `ready` line, else stops it and raises naming `what`.
    Subclasses handle every other stdout line in `on_line`; what the child writes to stderr (and any
    exception a callback raised) is kept in `errors`."""

    def __init__(self, argv: list[str], what: str, ready_s: float = 15.0) -> None:
        self.errors: list[str] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        if not self._ready.wait(ready_s):
            self.stop()
            raise RuntimeError(f"{what} did not start: {self.errors[-5:]}")

    def on_line(self, line: str) -> None:
        raise NotImplementedError

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line == "ready":
                self._ready.set()
                continue
            try:
                self.on_line(line)
            except Exception as exc:
                self.errors.append(f"{line!r}: {exc!r}")

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.errors.append(raw.decode(errors="replace").rstrip())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; always reaped."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
