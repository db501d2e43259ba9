"""Decode attention per step: the PyTorch path (gather + SDPA) against the C++ extension, in one run, interleaved.

    python -m benchmarks.paged_attention [--threads 2] [--dtype float32] [--repeats 5]

Shapes are one layer of the bench model (Hq 8, Hkv 2, head_dim 64, block 16) unless --heads/--kv-heads/--head-dim
say otherwise; batch 16/32/64 x context 512/2048, every sequence at the full context, block tables a random
permutation of the cache's blocks (no locality). Each cell reports the median of --repeats rounds of --iters calls,
the two paths alternating round by round so that load from other processes hits both alike. Also times, for a prefill
chunk over a cached prefix, the gather of the prefix against the SDPA call that follows it (whether reading the blocks
in place would pay there too).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from appliance.runtime import cpu_extension, kernels


def _time(fn, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def decode_cell(batch: int, context: int, args: argparse.Namespace, ext) -> tuple[float, float, float]:
    dtype = getattr(torch, args.dtype)
    bs, d = args.block_size, args.head_dim
    width = -(-context // bs)
    num_blocks = batch * width + 1
    k_cache = torch.randn(num_blocks, bs, args.kv_heads, d).to(dtype)
    v_cache = torch.randn(num_blocks, bs, args.kv_heads, d).to(dtype)
    tables = torch.randperm(num_blocks)[: batch * width].view(batch, width).int()
    lens = torch.full((batch,), context, dtype=torch.int32)
    q = torch.randn(batch, args.heads, d).to(dtype)
    scale = d**-0.5
    ref = lambda: kernels.torch_paged_decode_attention(q, k_cache, v_cache, tables, lens, scale)  # noqa: E731
    new = lambda: ext.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale)  # noqa: E731
    error = (ref().float() - new().float()).abs().max().item()
    ref_t, new_t = [], []
    for _ in range(args.repeats):
        ref_t.append(_time(ref, args.iters))
        new_t.append(_time(new, args.iters))
    return statistics.median(ref_t), statistics.median(new_t), error


def prefill_cell(chunk: int, context: int, args: argparse.Namespace) -> tuple[float, float]:
    dtype = getattr(torch, args.dtype)
    bs, d = args.block_size, args.head_dim
    width = -(-context // bs)
    k_cache = torch.randn(width * 4, bs, args.kv_heads, d).to(dtype)
    v_cache = torch.randn(width * 4, bs, args.kv_heads, d).to(dtype)
    table = torch.randperm(width * 4)[:width]
    q = torch.randn(chunk, args.heads, d).to(dtype)
    offset = context - chunk
    mask = torch.arange(context)[None, :] <= (torch.arange(chunk)[:, None] + offset)

    def gather():
        return kernels.gather_blocks(k_cache, table, 0)[:context], kernels.gather_blocks(v_cache, table, 1)[:context]

    ks, vs = gather()

    def sdpa():
        return F.scaled_dot_product_attention(q.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                              vs.transpose(0, 1)[None], attn_mask=mask, scale=d**-0.5,
                                              enable_gqa=True)

    g_t, s_t = [], []
    for _ in range(args.repeats):
        g_t.append(_time(gather, args.iters))
        s_t.append(_time(sdpa, max(1, args.iters // 4)))
    return statistics.median(g_t), statistics.median(s_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ext = cpu_extension.ops()
    if ext is None:
        raise SystemExit(f"the extension is not loaded ({cpu_extension.status()}); build it first")
    print(f"decode attention, one layer: Hq {args.heads}, Hkv {args.kv_heads}, D {args.head_dim}, {args.dtype}, "
          f"{args.threads} threads; median of {args.repeats} x {args.iters} calls")
    print(f"{'batch':>5} {'context':>7} {'torch ms':>9} {'ext ms':>8} {'speed-up':>8} {'max |diff|':>10}")
    with torch.inference_mode():
        for batch in (16, 32, 64):
            for context in (512, 2048):
                ref, new, error = decode_cell(batch, context, args, ext)
                print(f"{batch:>5} {context:>7} {ref * 1e3:>9.3f} {new * 1e3:>8.3f} {ref / new:>7.2f}x {error:>10.2e}")
        print("\nprefill chunk over a cached prefix: gathering the prefix vs the SDPA call")
        print(f"{'chunk':>5} {'context':>7} {'gather ms':>9} {'sdpa ms':>8} {'gather share':>12}")
        for chunk, context in ((16, 512), (64, 2048), (256, 2048), (512, 2048), (2048, 4096)):
            g, s = prefill_cell(chunk, context, args)
            print(f"{chunk:>5} {context:>7} {g * 1e3:>9.3f} {s * 1e3:>8.3f} {g / (g + s):>11.1%}")


if __name__ == "__main__":
    main()
