import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from nki_kernels import rotary_embedding, simulate
from tests.nki_kernels.conftest import assert_matches, cast, random, to_torch

# (tokens, query heads, kv heads, head_dim)
SHAPES = [(1, 4, 4, 8), (130, 8, 2, 64), (5, 32, 8, 128)]


def _cos_sin(num_tokens: int, dim: int, dtype: str):
    inv_freq = 1.0 / (10000 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    positions = np.arange(num_tokens)[::-1] * 3 + 11  # arbitrary, non-contiguous positions
    angles = np.concatenate([np.outer(positions, inv_freq)] * 2, axis=-1)
    return cast(np.cos(angles), dtype), cast(np.sin(angles), dtype)


@pytest.mark.simulator
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference(rng, shape, dtype):
    num_tokens, q_heads, kv_heads, dim = shape
    q, k = random(rng, (num_tokens, q_heads, dim), dtype), random(rng, (num_tokens, kv_heads, dim), dtype)
    cos, sin = _cos_sin(num_tokens, dim, dtype)
    q_out, k_out = simulate(rotary_embedding.kernel, q, k, cos, sin)
    q_ref, k_ref = rotary_embedding.reference(to_torch(q), to_torch(k), to_torch(cos), to_torch(sin))
    assert_matches(q_out, q_ref, dtype, "rotary_embedding")
    assert_matches(k_out, k_ref, dtype, "rotary_embedding")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_equals_transformers_apply_rotary_pos_emb(dtype):
    torch.manual_seed(0)
    q, k = torch.randn(9, 4, 16, dtype=dtype), torch.randn(9, 2, 16, dtype=dtype)
    cos, sin = torch.randn(9, 16, dtype=dtype), torch.randn(9, 16, dtype=dtype)
    # transformers wants [batch, heads, seq, dim] and cos/sin [batch, seq, dim]
    q_hf, k_hf = apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos[None], sin[None])
    q_ref, k_ref = rotary_embedding.reference(q, k, cos, sin)
    torch.testing.assert_close(q_ref, q_hf[0].transpose(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(k_ref, k_hf[0].transpose(0, 1), rtol=0, atol=0)


@pytest.mark.simulator
def test_kernel_rejects_odd_head_dim(rng):
    q, k = random(rng, (2, 2, 7), "float32"), random(rng, (2, 1, 7), "float32")
    cos = random(rng, (2, 7), "float32")
    with pytest.raises(ValueError, match="head_dim must be even"):
        simulate(rotary_embedding.kernel, q, k, cos, cos)
