"""The roofline estimate of a cost table, for devices that cannot be reached (transport ``none``).

Each part costs max(bytes moved / memory bandwidth, FLOPs / GEMM rate) from the profile's
``[hardware]`` facts; the table is marked ``estimated`` wherever it is shown.
"""

from __future__ import annotations

import datetime as dt

from edge.device.cost_table import CostTable
from edge.device.profiler import clamp_to_model, table_header
from edge.device.profiles import DeviceProfile
from exporters.backends import get_backend


def estimate_table(profile: DeviceProfile, config) -> CostTable:
    """Roofline costs from ``[hardware]``: time = max(bytes / bandwidth, FLOPs / GEMM rate)."""
    profile = clamp_to_model(profile, config)
    hw, ctx, T = profile.hardware, profile.context, profile.limits.prompt_tokens
    backend = get_backend(profile.backend)
    wbytes = backend.bytes_per_weight.get(profile.precision, 4.0)
    act = 2 if profile.precision == "fp16" else 4  # KV cache element size
    d, kv = config.d_model, config.n_kv_heads * config.head_dim
    bw, rate = hw.memory_bandwidth_gbs * 1e9, hw.gemm_gflops * 1e9

    def part(params: float, extra_flops_per_token: float, kv_bytes: float, stored: float | None = None) -> dict:
        """A part that reads ``params`` weights per token and stores ``stored`` (default the same)."""
        w = params * wbytes
        decode = max((w + kv_bytes) / bw, (2 * params + extra_flops_per_token) / rate) * 1e3
        prefill = max(w / bw, T * (2 * params + extra_flops_per_token) / rate) * 1e3
        return {"prefill_ms": prefill, "prefill_p90_ms": prefill * 1.1, "decode_ms": decode,
                "decode_p90_ms": decode * 1.1, "weight_bytes": (params if stored is None else stored) * wbytes,
                "arena_bytes": kv_bytes + 4 * act * d * T,
                "runtime_bytes": 0.0}

    attn_params = 2 * d * d + 2 * d * kv
    layers = {g: part(attn_params + 3 * d * m + 2 * d, 4 * d * ctx, 2 * kv * ctx * act)
              for g, m in config.widths.items()}
    # A token reads the head's table once (the lookup reads one row); a tied table may be stored twice.
    entries = config.vocab_size * d
    copies = backend.table_copies if config.tie_embeddings else 2
    fixed = part(entries + d, 0.0, 0.0, stored=copies * entries + d)
    fixed["runtime_bytes"] = hw.runtime_overhead_mb * 2**20
    table = table_header(profile, config, estimated=True)
    table.update(fixed=fixed, layers=layers, provenance={
        "device": profile.name, "transport": "none", "cpu_model": hw.cpu or "unknown",
        "libraries": {}, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": 0, "warmup": 0, "runner": "roofline estimate from the profile's [hardware] facts"})
    return table


