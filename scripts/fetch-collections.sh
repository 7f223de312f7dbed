#!/usr/bin/env bash
# Unpack the Ansible collections edgepop uses into ./collections/ without Galaxy.
#
# Galaxy is out of reach from the build machines, but PyPI is not, and the `ansible` community
# wheel carries every collection of a release. This script downloads that wheel once (pinned by
# version and sha256, cached in .cache/), and unpacks only the collections named in collections.txt,
# checking that each one has the version the list expects. A stamp keyed on the pin, the list and
# this script's format makes a second run a no-op that returns in milliseconds.
#
# Usage: scripts/fetch-collections.sh [--force]
# Environment:
#   PYTHON                     interpreter with pip (default: .venv/bin/python, else python3)
#   EDGEPOP_COLLECTIONS_DIR    where ansible_collections/ goes (default: ./collections)
#   EDGEPOP_CACHE_DIR          where the wheel is kept (default: ./.cache)
set -euo pipefail

# The community package built for ansible-core 2.19 (ansible 12.x requires ansible-core ~=2.19).
ANSIBLE_WHEEL_VERSION="12.3.0"
ANSIBLE_WHEEL_SHA256="cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414"
# Bump when the way collections are laid out changes, so existing trees get rebuilt.
LAYOUT_FORMAT=1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
list="${root}/collections.txt"
dest="${EDGEPOP_COLLECTIONS_DIR:-${root}/collections}"
cache="${EDGEPOP_CACHE_DIR:-${root}/.cache}/ansible-wheel"
stamp="${dest}/.edgepop-collections.stamp"
wheel="${cache}/ansible-${ANSIBLE_WHEEL_VERSION}-py3-none-any.whl"

force=0
for arg in "$@"; do
    case "${arg}" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "fetch-collections: unknown argument: ${arg}" >&2
            exit 2
            ;;
    esac
done

if [[ ! -r "${list}" ]]; then
    echo "fetch-collections: ${list} is missing" >&2
    exit 1
fi

# The stamp records everything the result depends on; equal stamp and all collections present
# means there is nothing to do.
wanted="$(grep -Ev '^[[:space:]]*(#|$)' "${list}")"
key="$(printf 'format %s\nansible==%s sha256:%s\n%s\n' \
    "${LAYOUT_FORMAT}" "${ANSIBLE_WHEEL_VERSION}" "${ANSIBLE_WHEEL_SHA256}" "${wanted}")"

up_to_date() {
    [[ -f "${stamp}" ]] && [[ "$(cat "${stamp}")" == "${key}" ]] || return 1
    local name _version
    while read -r name _version; do
        [[ -f "${dest}/ansible_collections/${name/.//}/MANIFEST.json" ]] || return 1
    done <<<"${wanted}"
}

if [[ "${force}" -eq 0 ]] && up_to_date; then
    echo "fetch-collections: collections up to date (ansible ${ANSIBLE_WHEEL_VERSION})"
    exit 0
fi

if [[ -n "${PYTHON:-}" ]]; then
    python="${PYTHON}"
elif [[ -x "${root}/.venv/bin/python" ]]; then
    python="${root}/.venv/bin/python"
else
    python="python3"
fi

mkdir -p "${dest}" "${cache}"

# Two concurrent runs (parallel make targets) would race on the swap below.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${dest}/.edgepop-collections.lock"
    flock 9
    if [[ "${force}" -eq 0 ]] && up_to_date; then
        echo "fetch-collections: collections up to date (ansible ${ANSIBLE_WHEEL_VERSION})"
        exit 0
    fi
fi

wheel_ok() {
    [[ -f "${wheel}" ]] && [[ "$(sha256sum "${wheel}" | cut -d' ' -f1)" == "${ANSIBLE_WHEEL_SHA256}" ]]
}

if ! wheel_ok; then
    echo "fetch-collections: downloading ansible==${ANSIBLE_WHEEL_VERSION} from PyPI"
    rm -f "${wheel}"
    "${python}" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "${cache}" "ansible==${ANSIBLE_WHEEL_VERSION}"
    if ! wheel_ok; then
        echo "fetch-collections: ${wheel} is missing or its sha256 is not ${ANSIBLE_WHEEL_SHA256}" >&2
        exit 1
    fi
fi

echo "fetch-collections: unpacking $(wc -l <<<"${wanted}") collections into ${dest}"
"${python}" - "${wheel}" "${dest}" "${wanted}" <<'PY'
"""Extract the listed collections from the wheel into a staging tree, check them, then swap it in."""

import json
import os
import shutil
import sys
import zipfile

wheel, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3]
collections = [line.split() for line in wanted.splitlines() if line.strip()]

staging = os.path.join(dest, f".staging-{os.getpid()}")
live = os.path.join(dest, "ansible_collections")
retired = os.path.join(dest, f".retired-{os.getpid()}")
shutil.rmtree(staging, ignore_errors=True)

problems = []
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    for entry in collections:
        if len(entry) != 2:
            problems.append(f"collections.txt: expected 'namespace.name version', got {' '.join(entry)!r}")
            continue
        fqcn, version = entry
        prefix = "ansible_collections/" + fqcn.replace(".", "/", 1) + "/"
        members = [n for n in names if n.startswith(prefix)]
        if prefix + "MANIFEST.json" not in members:
            problems.append(f"{fqcn}: not in {os.path.basename(wheel)}")
            continue
        shipped = json.loads(archive.read(prefix + "MANIFEST.json"))["collection_info"]["version"]
        if shipped != version:
            problems.append(f"{fqcn}: collections.txt wants {version}, the wheel ships {shipped}")
            continue
        for member in members:
            info = archive.getinfo(member)
            path = archive.extract(info, staging)
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                os.chmod(path, mode & 0o755 | 0o644)

if problems:
    shutil.rmtree(staging, ignore_errors=True)
    sys.exit("fetch-collections: " + "\n  ".join(["cannot unpack:", *problems]))

# Swap the whole tree so a collection dropped from the list does not linger.
if os.path.isdir(live):
    os.rename(live, retired)
os.rename(os.path.join(staging, "ansible_collections"), live)
shutil.rmtree(retired, ignore_errors=True)
shutil.rmtree(staging, ignore_errors=True)
PY

printf '%s\n' "${key}" >"${stamp}.tmp"
mv "${stamp}.tmp" "${stamp}"
echo "fetch-collections: done (ansible ${ANSIBLE_WHEEL_VERSION})"
