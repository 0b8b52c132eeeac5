"""What a process and the machine use, as Linux's /proc tells it: CPU seconds, resident memory, sockets, TCP states."""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from pathlib import Path

TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN", "04": "FIN_WAIT1"}


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants that are still alive."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    seen: set[int] = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            # The command name (field 2) may hold spaces: count the fields after its closing bracket.
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return total


def busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def socket_count(pid: int) -> int:
    """The sockets the process holds open."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


def tcp_states(port: int) -> Counter[str]:
    """TCP sockets whose local port is `port` (a server's side of its connections), by state (from /proc/net/tcp, as
    `ss` reads them)."""
    states: Counter[str] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port:
                    states[TCP_STATES.get(fields[3], fields[3])] += 1
    return states
