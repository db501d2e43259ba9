import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nki_kernels import paged_decode_attention, simulate
from tests.nki_kernels.conftest import assert_matches, random, to_torch

# (query heads, kv heads, head_dim, block_size, context lengths): GQA ratios 1, 4 and 8; contexts shorter than a
# block, spanning several blocks and several 128-token tiles; blocks smaller and larger than a tile.
CASES = [
    (4, 4, 32, 16, [1, 17, 200]),
    (16, 4, 64, 32, [129, 64]),
    (16, 2, 128, 8, [5, 300, 77, 128]),
    (8, 1, 16, 256, [300, 3]),
]


def _paged_inputs(rng, q_heads, kv_heads, dim, block_size, lengths, dtype, padding=-1):
    """Random cache with each sequence's blocks scattered over the pool; unused table entries hold `padding`."""
    lengths = np.asarray(lengths, dtype=np.int32)
    per_seq = (lengths + block_size - 1) // block_size
    max_blocks = int(per_seq.max()) + 1
    num_blocks = int(per_seq.sum()) + 3
    owners = rng.permutation(num_blocks)
    tables = np.full((len(lengths), max_blocks), padding, dtype=np.int32)
    start = 0
    for b, n in enumerate(per_seq):
        tables[b, :n] = owners[start:start + n]
        start += n
    q = random(rng, (len(lengths), q_heads, dim), dtype)
    k_cache = random(rng, (num_blocks, block_size, kv_heads, dim), dtype)
    v_cache = random(rng, (num_blocks, block_size, kv_heads, dim), dtype)
    return q, k_cache, v_cache, tables, lengths


@pytest.mark.simulator
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"gqa{c[0] // c[1]}-d{c[2]}-bs{c[3]}")
def test_kernel_matches_reference(rng, case, dtype):
    q, k_cache, v_cache, tables, lengths = _paged_inputs(rng, *case, dtype)
    scale = case[2] ** -0.5
    out = simulate(paged_decode_attention.kernel, q, k_cache, v_cache, tables, lengths, scale=scale)
    expected = paged_decode_attention.reference(*map(to_torch, (q, k_cache, v_cache, tables, lengths)), scale)
    assert_matches(out, expected, dtype, "paged_decode_attention")


@pytest.mark.simulator
def test_kernel_ignores_table_padding(rng):
    outputs = []
    for padding in (-1, 0, 10_000):
        inputs = _paged_inputs(np.random.default_rng(5), 8, 2, 32, 16, [3, 40], "float32", padding=padding)
        outputs.append(simulate(paged_decode_attention.kernel, *inputs, scale=0.2))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("case", CASES[:3])
def test_reference_equals_dense_sdpa(rng, case):
    q, k_cache, v_cache, tables, lengths = map(to_torch, _paged_inputs(rng, *case, "float32"))
    q_heads, kv_heads, dim, block_size, _ = case
    scale = 0.3
    got = paged_decode_attention.reference(q, k_cache, v_cache, tables, lengths, scale)
    for b, length in enumerate(lengths.tolist()):
        keys = torch.stack([k_cache[tables[b, t // block_size], t % block_size] for t in range(length)])
        values = torch.stack([v_cache[tables[b, t // block_size], t % block_size] for t in range(length)])
        expected = F.scaled_dot_product_attention(
            q[b][None, :, None, :], keys.transpose(0, 1)[None], values.transpose(0, 1)[None],
            scale=scale, enable_gqa=True,
        )[0, :, 0, :]
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-5)


def test_reference_ignores_table_padding(rng):
    outputs = []
    for padding in (-1, 0, 10_000):
        inputs = _paged_inputs(np.random.default_rng(5), 8, 2, 32, 16, [3, 40], "float32", padding=padding)
        outputs.append(paged_decode_attention.reference(*map(to_torch, inputs), 0.2))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    torch.testing.assert_close(outputs[0], outputs[2], rtol=0, atol=0)


@pytest.mark.simulator
def test_kernel_rejects_head_dim_over_128(rng):
    inputs = _paged_inputs(rng, 2, 1, 256, 16, [4], "float32")
    with pytest.raises(ValueError, match="head_dim 256 exceeds 128"):
        simulate(paged_decode_attention.kernel, *inputs, scale=1.0)
