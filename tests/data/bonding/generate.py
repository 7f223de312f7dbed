"""Write the recorded bonds under tests/data/bonding/ (committed; re-run only to change them).

`healthy` is /proc/net/bonding/bond0 of a 3-port 802.3ad bond as kernel 6.1 prints it, with the
bond's sysfs files; the broken layouts are the same bond with one fault each: a port that joined
another aggregator (cabled to a switch outside the MLAG pair), a partner that sends no LACPDUs
(partner MAC all zeros, ports in their own aggregators), and LACP rate slow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTNER = "44:4c:a8:12:34:56"
ZERO = "00:00:00:00:00:00"

HEAD = """Ethernet Channel Bonding Driver: v6.1.0-28-amd64

Bonding Mode: IEEE 802.3ad Dynamic link aggregation
Transmit Hash Policy: layer3+4 (1)
MII Status: up
MII Polling Interval (ms): 100
Up Delay (ms): 0
Down Delay (ms): 0
Peer Notification Delay (ms): 0

802.3ad info
LACP active: on
LACP rate: {rate}
Min links: 0
Aggregator selection policy (ad_select): stable
System priority: 65535
System MAC address: 02:00:01:00:01:00
Active Aggregator Info:
\tAggregator ID: 1
\tNumber of ports: {ports}
\tActor Key: 9
\tPartner Key: {pkey}
\tPartner Mac Address: {partner}
"""

SLAVE = """
Slave Interface: {name}
MII Status: {mii}
Speed: 1000 Mbps
Duplex: full
Link Failure Count: 0
Permanent HW addr: 02:00:01:00:01:0{n}
Slave queue ID: 0
Aggregator ID: {agg}
Actor Churn State: {churn}
Partner Churn State: {pchurn}
Actor Churned Count: 0
Partner Churned Count: {pcount}
details actor lacp pdu:
    system priority: 65535
    system mac address: 02:00:01:00:01:00
    port key: 9
    port priority: 255
    port number: {port}
    port state: {astate}
details partner lacp pdu:
    system priority: {ppri}
    system mac address: {partner}
    oper key: {pkey}
    port priority: 255
    port number: {pport}
    port state: {pstate}
"""


def bond(path: Path, *, rate: str = "fast", aggs: tuple[int, ...] = (1, 1, 1), partner: str = PARTNER) -> None:
    zero = partner == ZERO
    ports = sum(1 for a in aggs if a == 1)
    text = HEAD.format(rate=rate, ports=ports, pkey=1 if zero else 17, partner=partner)
    for n, agg in enumerate(aggs):
        text += SLAVE.format(
            name=f"ext{n}",
            n=n,
            mii="up",
            agg=agg,
            churn="churned" if zero else "none",
            pchurn="churned" if zero else "none",
            pcount=1 if zero else 0,
            port=n + 1,
            astate=71 if zero or agg != 1 else 63 if rate == "fast" else 61,
            ppri=65535,
            partner=partner,
            pkey=1 if zero else 17,
            pport=1 if zero else n + 10,
            pstate=1 if zero else 63 if rate == "fast" else 61,
        )
    proc = path / "proc/net/bonding/bond0"
    proc.parent.mkdir(parents=True, exist_ok=True)
    proc.write_text(text)
    sysfs = path / "sys/class/net/bond0/bonding"
    sysfs.mkdir(parents=True, exist_ok=True)
    values = {
        "mode": "802.3ad 4",
        "lacp_rate": f"{rate} {1 if rate == 'fast' else 0}",
        "xmit_hash_policy": "layer3+4 1",
        "miimon": "100",
        "slaves": "ext0 ext1 ext2",
        "ad_aggregator": "1",
        "ad_partner_mac": partner,
        "ad_num_ports": str(ports),
    }
    for key, value in values.items():
        (sysfs / key).write_text(value + "\n")


def main() -> None:
    layouts = {
        "healthy": {},
        "other-aggregator": {"aggs": (1, 1, 2)},
        "partner-zero": {"aggs": (1, 2, 3), "partner": ZERO},
        "slow-rate": {"rate": "slow"},
    }
    for name, kwargs in layouts.items():
        shutil.rmtree(HERE / name, ignore_errors=True)
        bond(HERE / name, **kwargs)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
