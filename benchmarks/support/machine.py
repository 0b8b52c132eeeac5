"""The machine a result was measured on, as every benchmark describes it."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Machine:
    cpu: str  # the CPU's model name ("?" when the system does not say)
    cpus: int | None
    memory: str  # total memory, "24 GiB" ("?" when the system does not say)
    python: str
    system: str
    kernel: str
    load_avg: tuple[float, float, float]  # when it was described (other jobs may share the CPUs)

    def load(self, digits: int = 2, sep: str = " ") -> str:
        return format_load(self.load_avg, digits, sep)

    def as_dict(self, load_digits: int = 2) -> dict[str, str]:
        """For a result's JSON and its report; `nproc` is the number of CPUs."""
        return {
            "cpu": self.cpu,
            "nproc": str(self.cpus),
            "memory": self.memory,
            "python": self.python,
            "system": self.system,
            "kernel": self.kernel,
            "load_avg": self.load(load_digits),
        }

    def __str__(self) -> str:
        return f"{self.cpu}, {self.cpus} CPUs, Python {self.python}, {self.system} {self.kernel}"


def machine() -> Machine:
    cpu = platform.processor() or platform.machine() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        if match := re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()):
            memory = f"{int(match.group(1)) / 1024 / 1024:.0f} GiB"
    one, five, fifteen = os.getloadavg()
    python, system, kernel = platform.python_version(), platform.system(), platform.release()
    return Machine(cpu, os.cpu_count(), memory, python, system, kernel, (one, five, fifteen))


def load_average(sep: str = "/") -> str:
    """The machine's load average now: 1, 5 and 15 minutes."""
    return format_load(os.getloadavg(), sep=sep)


def format_load(values: tuple[float, ...], digits: int = 2, sep: str = " ") -> str:
    return sep.join(f"{x:.{digits}f}" for x in values)
