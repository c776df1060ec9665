"""Which of the addresses `up` will bind are taken, by whom, and whether a part's port is its own.

Why: with another stack on our ports, our Kafka and MinIO died on "address already in use" while
the other stack's services answered our health checks. So `up` tries every address before it
starts anything, and a part is healthy only while its own process holds its ports.

Hand-written over /proc because psutil is not a dependency and this needs little of it: a
listening TCP socket is a line of /proc/net/tcp or tcp6 in state 0A (LISTEN) with its inode, and
the process holding it has a /proc/<pid>/fd link to `socket:[<inode>]`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"


@dataclass(frozen=True)
class Address:
    """One address a part binds; `part` names it as status does, with the role ("kafka-2 controller")."""

    part: str
    host: str
    port: int

    @property
    def program(self) -> str:
        """The supervised program holding this address: the part's name without its role."""
        return self.part.split()[0]


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket from /proc/net/tcp{,6}."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    inode: int


def _decode_ip(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc prints the address as 32-bit words in host byte order, each as 8 hex digits."""
    words = [int(hex_ip[i : i + 8], 16) for i in range(0, len(hex_ip), 8)]
    packed = b"".join(struct.pack("=I", word) for word in words)
    return ipaddress.ip_address(packed)


def parse_listeners(text: str) -> list[Listener]:
    """The LISTEN sockets of one /proc/net/tcp or /proc/net/tcp6 file's text."""
    found = []
    for line in text.splitlines()[1:]:  # the first line is the header
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        hex_ip, _, hex_port = fields[1].partition(":")
        found.append(Listener(_decode_ip(hex_ip), int(hex_port, 16), int(fields[9])))
    return found


def listeners(proc: Path = PROC) -> list[Listener]:
    found: list[Listener] = []
    for name in ("tcp", "tcp6"):
        try:
            found += parse_listeners((proc / "net" / name).read_text())
        except OSError:  # no IPv6 on this host
            continue
    return found


def socket_inodes(pid: int, proc: Path = PROC) -> set[int]:
    """Inodes of the sockets `pid` holds; empty when it is gone or another user's."""
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return set()
    inodes = set()
    for fd in fds:
        try:
            target = str(fd.readlink())
        except OSError:  # closed since the listing (the listing's own descriptor, for one)
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def socket_owners(inodes: set[int], proc: Path = PROC) -> dict[int, int]:
    """pid of the process holding each socket inode; sockets of processes we may not read are absent."""
    owners: dict[int, int] = {}
    for pid_dir in proc.glob("[0-9]*"):
        for inode in socket_inodes(int(pid_dir.name), proc) & inodes:
            owners.setdefault(inode, int(pid_dir.name))
    return owners


def command_line(pid: int, proc: Path = PROC) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part) or "?"


def parent_pid(pid: int, proc: Path = PROC) -> int | None:
    """The ppid from /proc/<pid>/stat: the field after the parenthesised command, which may hold spaces."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _host_ips(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return set()
    return {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}


def _clashes(listener: Listener, ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    """A listener takes our address when it is that address or a wildcard, or ours is a wildcard."""
    mapped = getattr(listener.ip, "ipv4_mapped", None)
    theirs = mapped or listener.ip
    return theirs.is_unspecified or any(ip.is_unspecified or ip == theirs for ip in ips)


def listening_inodes(address: Address, proc: Path = PROC) -> set[int]:
    """Inodes of the sockets listening where `address` would bind."""
    ips = _host_ips(address.host)
    return {
        listener.inode
        for listener in listeners(proc)
        if listener.port == address.port and _clashes(listener, ips)
    }


def holders(address: Address, proc: Path = PROC, inodes: set[int] | None = None) -> dict[int, str]:
    """pid → command line of each process listening where `address` would bind."""
    owners = socket_owners(listening_inodes(address, proc) if inodes is None else inodes, proc)
    return {pid: command_line(pid, proc) for pid in sorted(set(owners.values()))}


def bind_problem(address: Address) -> str | None:
    """None when `address` can be bound now, as a server would (SO_REUSEADDR), else why not."""
    try:
        info = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        return f"{address.host} does not resolve: {err.strerror}"
    with socket.socket(info[0], socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(info[4])
        except OSError as err:
            return "in use" if err.errno == errno.EADDRINUSE else err.strerror or str(err)
    return None


def port_problems(addresses: list[Address], proc: Path = PROC) -> list[str]:
    """Every reason `up` cannot bind these addresses, one line each; empty when all are free."""
    problems = []
    counts = Counter(a.port for a in addresses)
    for port in sorted(p for p, n in counts.items() if n > 1):
        parts = ", ".join(a.part for a in addresses if a.port == port)
        problems.append(f"port {port} is configured for several parts: {parts}")
    for address in addresses:
        problem = bind_problem(address)
        if problem is None:
            continue
        line = f"{address.host}:{address.port} ({address.part}): {problem}"
        held = holders(address, proc)
        if held:
            line += "; held by " + "; ".join(f"pid {pid}: {cmd}" for pid, cmd in held.items())
        elif problem == "in use":
            line += ", but by no listener this user can see (another user's, or a connection's own port)"
        problems.append(line)
    return problems


def ownership_problem(address: Address, pid: int, proc: Path = PROC) -> str | None:
    """None when `address` is served by `pid` or one of its children (a supervised part's shards)."""
    inodes = listening_inodes(address, proc)
    if not inodes:
        return f"{address.host}:{address.port} ({address.part}): nothing listens there"
    if inodes & socket_inodes(pid, proc):  # the usual case, without reading every process
        return None
    held = holders(address, proc, inodes)
    for holder in held:
        ancestor: int | None = holder
        while ancestor is not None and ancestor > 1:
            if ancestor == pid:
                return None
            ancestor = parent_pid(ancestor, proc)
    others = "; ".join(f"pid {p}: {cmd}" for p, cmd in held.items())
    return f"{address.host}:{address.port} ({address.part}) is held by {others}, not by pid {pid}"
