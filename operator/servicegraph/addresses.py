"""Finding the hosts a string names: URLs, host:port, connection strings, `nc host port`.

Pure text work for the kubernetes source (`inference`): which substrings of an env value, an
argument or a command look like an address, and what host and port each one names. Whether a
host is a Service is `inference`'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# An env variable whose name says it holds an address: a bare name counts there.
ADDRESS_VARIABLE: Final = re.compile(
    r"(?:^|_)(HOST|HOSTS|HOSTNAME|ADDR|ADDRESS|URL|URI|ENDPOINT|SERVER|SERVERS|SERVICE|BROKERS?)$"
)
# Hosts that are never a dependency: the pod itself, and listen-on-everything addresses.
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::", "::1", "*", "[::]"})
# OTLP's ports: whatever sits there is the telemetry pipeline, not an application call.
OTLP_PORTS: Final = frozenset({4317, 4318})
# Schemes and ports of message brokers: calls through them are asynchronous.
MESSAGING_SCHEMES: Final = frozenset(
    {"kafka", "plaintext", "sasl_plaintext", "sasl_ssl", "amqp", "amqps", "nats", "mqtt", "stomp"}
)
MESSAGING_PORTS: Final = frozenset({9092, 5672, 4222, 1883, 61613})

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_URL = re.compile(
    rf"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:[^@/\s,;]*@)?(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?"
)
_HOST_PORT = re.compile(rf"(?<![\w.@/:-])(?P<host>{_HOST}):(?P<port>\d{{1,5}})(?![\w.])")
_KEY_VALUE = re.compile(
    rf"(?i)(?:^|[;\s])(?:host|server|data source|address|addr)\s*=\s*(?P<host>{_HOST})"
    r"(?:[:,](?P<port>\d{1,5}))?"
)
# `nc -z kafka 9092`, `wait-for db 5432`: a host then a port, as separate words.
_HOST_THEN_PORT = re.compile(rf"(?<![\w.=/:-])(?P<host>{_HOST})\s+(?P<port>\d{{2,5}})(?![\w.])")
_BARE = re.compile(rf"^{_HOST}$")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


@dataclass(frozen=True, slots=True)
class HostReference:
    """A host a string names; `text` is the part of the string that names it."""

    host: str
    port: int | None
    text: str
    messaging: bool


def references_in(
    value: str, *, variable: str | None = None, command: bool = False
) -> tuple[HostReference, ...]:
    """The hosts `value` names. `variable` is the env variable it came from (a bare name counts
    only in one whose name says it holds an address); `command` says it is an argument or a
    command, where `host port` as two words counts too."""
    address = variable is not None and is_address_variable(variable)
    if not address and ":" not in value and "=" not in value and not command:
        return ()  # 8080, info, true: most values name nothing, and cost nothing
    return _references(value, address, command)


@lru_cache(maxsize=4096)  # variable names repeat across every workload
def is_address_variable(name: str) -> bool:
    return bool(ADDRESS_VARIABLE.search(name.upper()))


@lru_cache(maxsize=65536)  # clusters repeat values: one collector, one broker, one database
def _references(value: str, address: bool, command: bool) -> tuple[HostReference, ...]:
    found: dict[tuple[str, int | None], HostReference] = {}
    covered: list[tuple[int, int]] = []

    def add(host: str, port: str | None, text: str, start: int, end: int, scheme: str = "") -> None:
        covered.append((start, end))
        number = int(port) if port else None
        name = host.lower().rstrip(".")
        if name in LOCAL_HOSTS or _IP.match(name) or number in OTLP_PORTS:
            return
        messaging = scheme.lower() in MESSAGING_SCHEMES or number in MESSAGING_PORTS
        found.setdefault((name, number), HostReference(name, number, text, messaging))

    if "://" in value:
        for match in _URL.finditer(value):
            add(match["host"], match["port"], match[0], *match.span(), scheme=match["scheme"])
    patterns = [
        *((_HOST_PORT,) if ":" in value else ()),
        *((_KEY_VALUE,) if "=" in value else ()),
        *((_HOST_THEN_PORT,) if command else ()),
    ]
    for pattern in patterns:
        for match in pattern.finditer(value):
            start, end = match.span("host")
            if any(a <= start < b for a, b in covered):
                continue
            add(match["host"], match["port"], match[0].strip(" ;"), start, end)
    if not found and address:
        for part in (p.strip() for p in value.split(",")):
            if _BARE.match(part) and not part.isdigit():
                add(part, None, part, 0, 0)
    return tuple(found.values())


def references_cache_clear() -> None:
    """Forget the strings seen so far (for measuring a first look)."""
    _references.cache_clear()
