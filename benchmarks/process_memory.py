"""A process's memory as the benchmark scripts read it (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of process `pid` (this one by default) in MB; (0, 0) once it has ended."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]
