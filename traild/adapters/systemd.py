"""sd_notify without libsystemd: one AF_UNIX datagram to ``$NOTIFY_SOCKET`` per message.

A no-op when ``NOTIFY_SOCKET`` is unset (tests, a terminal). A failed send is logged, never
raised: the daemon must not die because the service manager could not be told something.
The protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` lines, UTF-8; an address that
starts with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import os
import socket
import time

from loguru import logger


def notify(*lines: str) -> bool:
    """Send ``lines`` as one notification; True when a datagram was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    elif address[0] != "/":
        logger.bind(event="systemd.notify_failed", address=address).warning(
            "unsupported NOTIFY_SOCKET address"
        )
        return False
    payload = "\n".join(lines).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a full socket buffer must not stall the event loop
            sock.sendto(payload, address)
    except OSError as exc:
        logger.bind(event="systemd.notify_failed", error=str(exc)).warning(
            "cannot notify the service manager"
        )
        return False
    return True


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line, as systemctl shows it


def ready(status: str | None = None) -> bool:
    """Startup (or a reload) finished: ``READY=1`` with an optional status line."""
    return notify("READY=1", *([_status_line(status)] if status else []))


def reloading() -> bool:
    """A reload starts: ``RELOADING=1`` with the CLOCK_MONOTONIC time systemd >= 253 needs."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown begins: ``STOPPING=1``."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """Keep-alive ping: ``WATCHDOG=1``."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status for ``systemctl status``."""
    return notify(_status_line(text))


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), None when not enabled.

    ``WATCHDOG_PID``, when set, must be this process: a child must not ping for its parent.
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None
