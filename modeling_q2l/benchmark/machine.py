"""The machine a number was measured on, for every benchmark's header: CPUs differ 3x on the same code."""

import os
import platform
import re

import torch


def cpu_model() -> str:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
    model = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
    name = match.group(1).strip() if match else platform.machine()
    return name + (f" (family {family.group(1)}, model {model.group(1)})" if family and model else "")


def vector_extensions() -> str:
    try:
        flags = set(re.search(r"^flags\s*:\s*(.+)$", open("/proc/cpuinfo", encoding="utf-8").read(), re.M).group(1).split())
    except (OSError, AttributeError):
        return "unknown"
    known = [name for name in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if name in flags]
    return ", ".join(known) or "no AVX2"


def blas() -> str:
    config = torch.__config__.show()
    match = re.search(r"BLAS_INFO=(\w+)", config)
    return match.group(1) if match else "unknown"


def machine_description() -> str:
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, {vector_extensions()}; BLAS: {blas()}; "
        f"torch {torch.__version__}"
    )
