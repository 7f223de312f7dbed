"""The agents' bundle: reproducible, and enough for a python3 that has none of the controller's
packages (this host's /usr/bin/python3 is Debian's, like the boxes')."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from edgepop.agents.bundle import MANIFEST, build, main

SYSTEM_PYTHON = "/usr/bin/python3"


def test_bundle_is_reproducible_and_complete() -> None:
    first, manifest = build()
    second, _ = build()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    packages = manifest["packages"]
    assert isinstance(packages, dict) and set(packages) >= {"edgepop", "pydantic", "pydantic-core", "PyYAML"}


def test_out_is_rewritten_only_when_it_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.tar.gz"
    assert main(["--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["changed"] is True and first["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert main(["--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False


def _bare_python() -> str | None:
    if shutil.which(SYSTEM_PYTHON) is None:
        return None
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import pydantic"], capture_output=True, check=False)
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    return SYSTEM_PYTHON if probe.returncode != 0 and version == want else None


def test_healthd_runs_from_the_bundle_on_a_bare_python(tmp_path: Path) -> None:
    python = _bare_python()
    if python is None:
        pytest.skip(f"needs {SYSTEM_PYTHON} {sys.version_info.major}.{sys.version_info.minor} without pydantic")
    data, _ = build()
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(data)
    lib = tmp_path / "lib"
    with tarfile.open(archive) as tar:
        tar.extractall(lib, filter="data")
    assert (lib / MANIFEST).is_file()
    config = tmp_path / "healthd.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "hostname": "srv1",
                "services": [
                    {
                        "name": "http",
                        "protocols": ["static_http_v4"],
                        "address": "203.0.113.100",
                        "check": {"type": "http", "port": 80, "path": "/healthz"},
                    }
                ],
            }
        )
    )
    proc = subprocess.run(
        [python, "-m", "edgepop.agents.healthd", "--config", str(config), "--check-config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK (1 services)" in proc.stdout
