"""Just enough of the DNS wire format (RFC 1035) for a health check: one question out, one header in.

A health check needs to know that the server answered *our* question with the expected rcode; it
does not need the answer records, so none are parsed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
_CLASS_IN = 1
_FLAG_QR = 0x8000
_FLAG_TC = 0x0200


class DnsWireError(ValueError):
    """A reply that is not an answer to the question sent."""


def encode_name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label] if name not in (".", "") else []
    out = b""
    for label in labels:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"DNS label too long or empty in {name!r}")
        out += bytes([len(raw)]) + raw
    out += b"\0"
    if len(out) > 255:
        raise ValueError(f"DNS name too long: {name!r}")
    return out


def build_query(qid: int, name: str, qtype: str, *, recursion_desired: bool = False) -> bytes:
    """A query with one question (class IN); recursion off by default: it asks an authoritative server."""
    flags = 0x0100 if recursion_desired else 0
    header = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", QTYPES[qtype], _CLASS_IN)


@dataclass(frozen=True)
class ReplyHeader:
    qid: int
    rcode: int
    truncated: bool
    answers: int

    @property
    def rcode_name(self) -> str:
        return next((n for n, c in RCODES.items() if c == self.rcode), str(self.rcode))


def parse_reply(data: bytes, query: bytes) -> ReplyHeader:
    """Check that `data` answers `query` (same id, QR set, same question) and return its header."""
    if len(data) < 12:
        raise DnsWireError(f"reply too short ({len(data)} bytes)")
    qid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", data[:12])
    sent_id = struct.unpack("!H", query[:2])[0]
    if qid != sent_id:
        raise DnsWireError(f"reply id {qid} does not match query id {sent_id}")
    if not flags & _FLAG_QR:
        raise DnsWireError("not a reply (QR bit clear)")
    question = query[12:]
    if qdcount == 1 and data[12 : 12 + len(question)].lower() != question.lower():
        raise DnsWireError("reply is for a different question")
    return ReplyHeader(qid=qid, rcode=flags & 0x000F, truncated=bool(flags & _FLAG_TC), answers=ancount)
