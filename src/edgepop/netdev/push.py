"""The push engine: one candidate config onto one device, safely, over a NAPALM driver.

Order of events, and why:

1. Connect. A confirmed commit already pending on the device (someone else's, or ours from a run
   that died) means its outcome is unknown: stop, change nothing.
2. Load the candidate (merge or replace) and ask the device for the diff. Rejected lines fail here:
   the driver raises (eAPI, NETCONF), or `drivers` makes it raise (EOS over SSH, where NAPALM
   does not look at the CLI's "% Invalid input"). The candidate is discarded; nothing committed.
3. No diff: discard, report unchanged. Check mode: discard, report the diff as the change.
4. Archive the running config (a file per commit), note which BGP sessions are up.
5. Commit with a confirm timer (`revert_in`): if this run loses the device from here on, the
   device goes back to the archived config by itself.
6. Post-checks over a *new* connection: management still accepts sessions and reports the intended
   hostname; every BGP session that was up before (and is still configured) is up again, and every
   session named in `expect_bgp_up` is up, within `bgp_wait` seconds.
7. All good: confirm. Otherwise roll back (or, when the device cannot be reached to roll back, let
   the timer do it) and fail with what broke.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from edgepop.netdev.errors import (
    CommitFailed,
    ConfigLocked,
    ConfigRejected,
    DeviceUnreachable,
    InvalidRequest,
    NetdevError,
    PostCheckFailed,
    classify,
)


class Driver(Protocol):
    """The part of napalm.base.NetworkDriver the engine uses."""

    def close(self) -> None: ...
    def load_merge_candidate(self, filename: str | None = None, config: str | None = None) -> None: ...
    def load_replace_candidate(self, filename: str | None = None, config: str | None = None) -> None: ...
    def compare_config(self) -> str: ...
    def discard_config(self) -> None: ...
    def commit_config(self, message: str = "", revert_in: int | None = None) -> None: ...
    def confirm_commit(self) -> None: ...
    def rollback(self) -> None: ...
    def has_pending_commit(self) -> bool: ...
    def get_config(self, retrieve: str = "all", full: bool = False, sanitized: bool = False) -> dict[str, str]: ...
    def get_facts(self) -> dict[str, Any]: ...
    def get_bgp_neighbors(self) -> dict[str, Any]: ...


Opener = Callable[[], Driver]
"""Opens a new connection to the device (the engine opens a second one for the post-checks)."""

Mode = Literal["merge", "replace"]


@dataclass(frozen=True)
class PushRequest:
    host: str
    config: str
    mode: Mode = "merge"
    check: bool = False
    revert_in: int = 300
    """Seconds the device waits for the confirm before it reverts by itself."""
    archive_dir: Path | None = None
    """Running configs are archived under archive_dir/<host>/ before each commit."""
    expect_hostname: str | None = None
    expect_bgp_up: tuple[str, ...] = ()
    """BGP peer addresses (any VRF) that must be Established after the commit, up before or not."""
    bgp_wait: float = 60.0
    poll_interval: float = 2.0
    revert_multiple: int = 1
    """The device's timer granularity in seconds (Junos: whole minutes)."""

    def validate(self) -> None:
        if self.mode not in ("merge", "replace"):
            raise InvalidRequest(self.host, f"mode must be merge or replace, not {self.mode!r}")
        if not self.config.strip():
            raise InvalidRequest(self.host, "the candidate config is empty")
        if self.revert_in <= 0 or self.revert_in % self.revert_multiple:
            raise InvalidRequest(
                self.host, f"revert_in must be a positive multiple of {self.revert_multiple} s, not {self.revert_in}"
            )
        if self.bgp_wait < 0 or self.poll_interval <= 0:
            raise InvalidRequest(self.host, "bgp_wait must be >= 0 and poll_interval > 0")


@dataclass
class PushResult:
    host: str
    changed: bool = False
    diff: str = ""
    committed: bool = False
    archive: Path | None = None
    checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "changed": self.changed,
            "diff": self.diff,
            "committed": self.committed,
            "archive": str(self.archive) if self.archive else None,
            "checks": list(self.checks),
        }


def _step(host: str, doing: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except NetdevError:
        raise
    except Exception as exc:
        raise classify(host, exc, doing) from exc


def archive_running(host: str, running: str, directory: Path, now: datetime | None = None) -> Path:
    """Write the running config to directory/<host>/<UTC timestamp>.conf atomically; return the path."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    target_dir = directory / host
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{stamp}.conf"
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".archive-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(running)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def bgp_state(neighbors: dict[str, Any]) -> dict[str, bool]:
    """`get_bgp_neighbors()` flattened to {"vrf peer": is_up}."""
    out: dict[str, bool] = {}
    for vrf, data in neighbors.items():
        for peer, info in (data.get("peers") or {}).items():
            out[f"{vrf} {peer}"] = bool(info.get("is_up"))
    return out


def missing_sessions(before: dict[str, bool], after: dict[str, bool], expected: Iterable[str]) -> list[str]:
    """Sessions that should be up after the commit and are not.

    Should be up: those up before that the new config still has (a session the change removed
    is not missing), and every expected peer address in whichever VRF it is configured.
    """
    should = {key for key, was_up in before.items() if was_up and key in after}
    unconfigured = []
    for peer in expected:
        keys = {key for key in after if key.split(" ", 1)[1] == peer}
        should |= keys
        if not keys:
            unconfigured.append(f"{peer} (not configured)")
    return sorted(key for key in should if not after[key]) + unconfigured


class Pusher:
    """One push; see the module docstring for the sequence."""

    def __init__(
        self,
        request: PushRequest,
        opener: Opener,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        request.validate()
        self.req = request
        self.opener = opener
        self.clock = clock
        self.sleep = sleep
        self.result = PushResult(host=request.host)

    def run(self) -> PushResult:
        host = self.req.host
        drv: Driver = _step(host, "connecting", self.opener)
        try:
            self._push(drv)
        finally:
            # closing a connection the device already dropped is not news
            with contextlib.suppress(Exception):
                drv.close()
        return self.result

    def _push(self, drv: Driver) -> None:
        host, req, res = self.req.host, self.req, self.result
        if _step(host, "checking for a pending confirmed commit", drv.has_pending_commit):
            raise ConfigLocked(host, "a confirmed commit is pending on the device; confirm or roll it back first")
        load = drv.load_replace_candidate if req.mode == "replace" else drv.load_merge_candidate
        _step(host, f"loading the candidate ({req.mode})", lambda: load(config=req.config))
        try:
            res.diff = str(_step(host, "comparing the candidate", drv.compare_config) or "").strip()
        except NetdevError:
            self._discard(drv)
            raise
        res.changed = bool(res.diff)
        if not res.changed or req.check:
            self._discard(drv)
            return

        try:
            if req.archive_dir is not None:
                running = _step(host, "reading the running config", lambda: drv.get_config(retrieve="running"))
                res.archive = archive_running(host, running["running"], req.archive_dir)
            before = bgp_state(_step(host, "reading BGP sessions", drv.get_bgp_neighbors))
        except BaseException:
            self._discard(drv)
            raise

        try:
            drv.commit_config(revert_in=req.revert_in)
        except Exception as exc:
            failure = classify(host, exc, f"committing with a {req.revert_in} s confirm timer")
            if isinstance(failure, DeviceUnreachable):
                self._after_lost_commit(failure)
            reason = failure.message
            try:
                drv.discard_config()
            except Exception:
                reason += "; discarding the candidate failed too"
            raise CommitFailed(host, reason) from exc
        try:
            self._post_checks(before)
        except PostCheckFailed as failed:
            self._roll_back(drv, failed)
            raise
        try:
            drv.confirm_commit()
        except Exception as exc:
            raise CommitFailed(
                host,
                f"confirming the commit failed ({classify(host, exc, 'confirming').message}); "
                f"the device reverts by itself within {req.revert_in} s",
            ) from exc
        res.committed = True

    def _after_lost_commit(self, failure: NetdevError) -> None:
        """The session died in or just after the commit: find out over a new one whether it stands.

        A change that cuts management does this: the device commits, then drops the session before
        the driver is done (NAPALM's Junos driver unlocks the configuration after committing, and
        that RPC fails). Such a commit stands on its confirm timer, so "commit failed" would be
        wrong: either the device cannot be reached (its timer reverts it) or the pending commit is
        rolled back here.
        """
        host, req = self.req.host, self.req
        try:
            check = self.opener()
        except Exception as exc:
            raise PostCheckFailed(
                host,
                f"management no longer reachable after the commit ({failure.message}; then {exc}): "
                f"the device reverts by itself when its {req.revert_in} s confirm timer expires",
            ) from exc
        try:
            if not check.has_pending_commit():
                raise CommitFailed(host, f"{failure.message}; nothing was left pending on the device")
            check.rollback()
        except NetdevError:
            raise
        except Exception as exc:
            raise CommitFailed(
                host,
                f"{failure.message}; checking or rolling back over a new session failed too "
                f"({classify(host, exc, 'rolling back').message}): the device reverts by itself within "
                f"{req.revert_in} s",
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                check.close()
        raise CommitFailed(host, f"{failure.message}; the commit went through and was rolled back")

    def _discard(self, drv: Driver) -> None:
        try:
            drv.discard_config()
        except Exception as exc:
            raise classify(self.req.host, exc, "discarding the candidate") from exc

    def _roll_back(self, drv: Driver, failed: PostCheckFailed) -> None:
        try:
            drv.rollback()
        except Exception as exc:
            failed.message += (
                f"; rolling back failed ({classify(self.req.host, exc, 'rolling back').message}): "
                f"the device reverts by itself when its {self.req.revert_in} s confirm timer expires"
            )
        else:
            failed.message += "; the commit was rolled back"
        failed.args = (f"{failed.host}: {failed.message}",)

    def _post_checks(self, before: dict[str, bool]) -> None:
        host, req = self.req.host, self.req
        try:
            check = self.opener()
        except Exception as exc:
            raise PostCheckFailed(host, f"management no longer reachable after the commit: {exc}") from exc
        try:
            try:
                facts = check.get_facts()
            except Exception as exc:
                raise PostCheckFailed(host, f"management no longer answers after the commit: {exc}") from exc
            if req.expect_hostname and facts.get("hostname") != req.expect_hostname:
                raise PostCheckFailed(
                    host, f"device reports hostname {facts.get('hostname')!r}, expected {req.expect_hostname!r}"
                )
            self.result.checks.append("management reachable")
            deadline = self.clock() + req.bgp_wait
            while True:
                try:
                    after = bgp_state(check.get_bgp_neighbors())
                except Exception as exc:
                    raise PostCheckFailed(host, f"reading BGP sessions after the commit failed: {exc}") from exc
                missing = missing_sessions(before, after, req.expect_bgp_up)
                if not missing:
                    break
                if self.clock() >= deadline:
                    raise PostCheckFailed(
                        host, f"BGP sessions not established {req.bgp_wait:g} s after the commit: {', '.join(missing)}"
                    )
                self.sleep(req.poll_interval)
            up = sum(after.values())
            self.result.checks.append(f"BGP: {up} of {len(after)} sessions established")
        finally:
            with contextlib.suppress(Exception):
                check.close()


def push_config(request: PushRequest, opener: Opener) -> PushResult:
    """Push `request.config` to the device `opener` connects to; raise a NetdevError on failure."""
    return Pusher(request, opener).run()


__all__ = [
    "ConfigRejected",
    "Driver",
    "PushRequest",
    "PushResult",
    "Pusher",
    "archive_running",
    "bgp_state",
    "missing_sessions",
    "push_config",
]
