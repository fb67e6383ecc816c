"""The addresses a server binds: free before it starts, and who listens on them once it runs.

A port is free when a socket can bind it on the bind host with SO_REUSEADDR but without SO_REUSEPORT:
that fails for any listener on the port (gRPC servers set SO_REUSEPORT, so a second tritonserver would
share a taken gRPC port without this check) and passes for connections in TIME_WAIT. Who listens is read
from /proc/net/tcp{,6} (Linux): the listening socket's inode, found among a process's open files.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from trt_build.common.errors import SwallowTrtError

TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def url_host(host: str) -> str:
    """`host` as it stands in a URL (IPv6 in brackets); the wildcard reached through loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def shown_host(host: str) -> str:
    """`host` as the banner shows what is bound."""
    return f"{host} (all interfaces)" if host in ("0.0.0.0", "::") else host


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse, naming the port, when two services share a port or one is taken on `host`."""
    seen: dict[int, str] = {}
    for service, port in ports.items():
        if not 1 <= port <= 65535:
            raise SwallowTrtError(
                f"{service} port {port} is not a TCP port (1-65535).",
                "Choose a lower --http-port (gRPC and metrics take the two after it) or give each port.",
            )
        if port in seen:
            raise SwallowTrtError(
                f"{service} and {seen[port]} are both given port {port}.",
                "Give each service its own port (--http-port P alone uses P, P+1 and P+2).",
            )
        seen[port] = service
    for service, port in ports.items():
        problem = port_problem(host, port)
        if problem:
            raise SwallowTrtError(
                f"{service} port {port} on {host} is not free: {problem}.",
                f"Stop what listens there (`ss -ltnp 'sport = :{port}'` shows it), or serve on other ports: "
                "--http-port P (gRPC P+1 and metrics P+2 follow), --grpc-port, --metrics-port, --openai-port.",
            )


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` as the module docstring says (OSError when it cannot be)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_problem(error: OSError) -> str:
    """Why a bind failed, in words."""
    return (
        "another process listens on it" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
    )


def port_problem(host: str, port: int) -> str | None:
    """Why `port` cannot be bound on `host`, or None when it can."""
    try:
        bind_socket(host, port).close()
    except OSError as error:
        return bind_problem(error)
    return None


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its address as /proc writes it (hex), its port, its inode."""

    address: str
    port: int
    inode: int


def listeners(port: int) -> list[Listener]:
    """The sockets listening on `port` (IPv4 and IPv6); empty where /proc/net is absent."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == TCP_LISTEN and int(hex_port, 16) == port:
                found.append(Listener(address, port, int(fields[9])))
    return found


def socket_inodes(pids: list[int]) -> set[int]:
    """The inodes of the sockets the processes `pids` hold open (those /proc lets us read)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


def group_pids(pgid: int) -> list[int]:
    """The processes of process group `pgid` (tritonserver, or mpirun and its ranks)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def owns_port(pgid: int, port: int) -> bool | None:
    """Whether process group `pgid` holds the socket listening on `port`; None where /proc cannot tell."""
    found = listeners(port)
    if not Path("/proc/net/tcp").is_file():
        return None
    return bool(found) and any(listener.inode in socket_inodes(group_pids(pgid)) for listener in found)
