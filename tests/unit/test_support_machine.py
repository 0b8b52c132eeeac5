"""The machine description every benchmark records (`benchmarks.support.machine`)."""

from __future__ import annotations

import os
import platform
import re

from benchmarks.support.machine import format_load, load_average, machine


def test_the_description_names_the_cpus_python_and_kernel_of_this_machine() -> None:
    m = machine()
    assert m.cpus == os.cpu_count()
    assert m.python == platform.python_version()
    assert (m.system, m.kernel) == (platform.system(), platform.release())
    assert m.cpu and m.cpu != "?"
    assert re.fullmatch(r"\d+ GiB", m.memory)  # this suite runs on Linux, which has /proc/meminfo
    assert len(m.load_avg) == 3 and all(x >= 0 for x in m.load_avg)
    assert str(m) == f"{m.cpu}, {m.cpus} CPUs, Python {m.python}, {m.system} {m.kernel}"


def test_as_dict_is_what_results_record() -> None:
    m = machine()
    d = m.as_dict(load_digits=1)
    assert d == {
        "cpu": m.cpu,
        "nproc": str(m.cpus),
        "memory": m.memory,
        "python": m.python,
        "system": m.system,
        "kernel": m.kernel,
        "load_avg": m.load(1),
    }
    assert re.fullmatch(r"\d+\.\d \d+\.\d \d+\.\d", d["load_avg"])


def test_load_formats() -> None:
    assert format_load((0.5, 1.25, 10.0)) == "0.50 1.25 10.00"
    assert format_load((0.5, 1.25, 10.0), 1, "/") == "0.5/1.2/10.0"
    assert re.fullmatch(r"\d+\.\d\d/\d+\.\d\d/\d+\.\d\d", load_average())
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d", load_average(" "))
