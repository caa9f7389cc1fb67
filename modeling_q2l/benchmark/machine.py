"""The machine a number was measured on, for every benchmark's header: CPUs differ 3x on the same code."""

import os
import platform
import re
import time

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


def instruction_limits() -> str:
    """Instruction-set caps set in the environment (to stand in for an older CPU), which the numbers depend on."""
    limits = [f"{name}={os.environ[name]}" for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS") if os.environ.get(name)]
    return f"; limited by {', '.join(limits)}" if limits else ""


def machine_description() -> str:
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, {vector_extensions()}; BLAS: {blas()}; "
        f"torch {torch.__version__}{instruction_limits()}"
    )


def float32_matmul_peak_gflops(repeats: int = 3) -> float:
    """The best float32 GFLOP/s of one large matrix product (4096 x 2048 x 4096) through the BLAS and through
    oneDNN, at torch's current threads: what a compute-bound model can reach on this machine."""
    left, right = torch.randn(4096, 2048), torch.randn(4096, 2048)
    candidates = [lambda: torch.nn.functional.linear(left, right)]
    onednn_linear = getattr(getattr(torch._C, "_nn", None), "mkldnn_linear", None)
    if onednn_linear is not None and torch.backends.mkldnn.is_available():
        packed = left.to_mkldnn()
        candidates.append(lambda: onednn_linear(packed, right, None))
    best = float("inf")
    with torch.inference_mode():
        for function in candidates:
            function()
            for _ in range(repeats):
                start = time.perf_counter()
                function()
                best = min(best, time.perf_counter() - start)
    return 2 * 4096 * 2048 * 4096 / best / 1e9


def gflops_per_call(function) -> float:
    """Floating-point operations (2 per multiply-add) of one call of `function`, counted by torch's FLOP counter
    (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops() / 1e9
