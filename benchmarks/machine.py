"""The machine a benchmark ran on, recorded next to its rows so runs can be compared.

Shared by the scripts in this folder (they run as ``python benchmarks/<script>.py``, which puts
this folder on ``sys.path``).

Example:
    >>> describe_machine(["pennylane"])["cores"] >= 1
    True
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine(packages: list[str] = ()) -> dict:
    """CPU model, cores, torch threads, GPU, Python/torch/qubert versions (+ ``packages``), date, load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: _version(name) for name in ["qubert", *packages]},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def close_machine(machine: dict, started: float) -> dict:
    """Add the load average at the end and the total seconds since ``started`` (``time.perf_counter()``)."""
    machine["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine["total_seconds"] = round(time.perf_counter() - started, 1)
    return machine


def write_report(path: Path, payload: dict) -> None:
    """Write a benchmark's JSON (machine + rows) atomically: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path}", file=sys.stderr)
