#!/usr/bin/env bash
# Idempotent set-up of everything `make demo` and `make test` need on a fresh Debian 12 machine:
# Debian packages (only the missing ones), the Python virtualenv with pinned dependencies, the
# project itself (editable) and the Ansible collections. A second run finishes in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  bird2            # BIRD 2: syntax checks of rendered configs (the lab's boxes have their own)
  openssh-client   # Ansible's transport to the lab hosts
  git
  podman runc uidmap   # the lab's containers (runc: crun fails on this cgroup layout)
  netavark aardvark-dns iptables  # podman's network backend for the lab (netavark calls iptables)
  mmdebstrap zstd      # the project's Debian image, built from Debian packages
  nftables iproute2    # the lab's forwarding guard, veth cabling and network namespaces
  busybox              # tiny httpd for the health agent's lab test
  nginx-light          # the frontline proxy's release test and bench/upgrade.py
  dnsmasq-base curl    # provisiond's DHCP/TFTP in its lab test and the zero-touch VM proof
  qemu-system-x86 cpio # the VM proof of bonds and IRQ pinning (tests/vm): guests booted from the image
)
VENV=.venv
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them)"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bird2 and nginx start system-wide daemons on install; the project runs its own instances only.
for unit in bird.service nginx.service; do
  if systemctl is-enabled "$unit" >/dev/null 2>&1; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

# The lab reaches its boxes over an --internal podman network. With the CNI backend (what Debian's
# podman falls back to once it has images) such a network leaves the host without an address on it,
# so nothing answers; netavark gives the host the gateway address. Pin the backend explicitly.
conf_d=/etc/containers/containers.conf.d
if [ "$(id -u)" -eq 0 ] && ! grep -qs 'network_backend = "netavark"' "$conf_d/50-edgepop.conf"; then
  log "podman: network backend netavark ($conf_d/50-edgepop.conf)"
  mkdir -p "$conf_d"
  printf '%s\n' '# edgepop (scripts/setup.sh): the lab needs netavark; CNI gives the host no address on --internal networks' \
    '[network]' 'network_backend = "netavark"' > "$conf_d/50-edgepop.conf"
fi

stamp="$VENV/.edgepop-deps"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing pinned Python dependencies (requirements.txt)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import edgepop, ansible, napalm, ruamel.yaml" 
  echo "$want" > "$stamp"
fi
if [ -x scripts/fetch-collections.sh ]; then
  PATH="$PWD/$VENV/bin:$PATH" scripts/fetch-collections.sh
fi
log "ready"
