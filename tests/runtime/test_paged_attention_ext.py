"""The C++ paged decode attention (appliance/runtime/csrc/) against the PyTorch reference, and its fallback."""
from __future__ import annotations

import logging

import pytest
import torch

from appliance.runtime import LLM, SamplingParams, cpu_extension, kernels
from nki_kernels.paged_decode_attention.reference import paged_decode_attention as reference
from tests.runtime.conftest import PROMPTS

BLOCK = 16
FALLBACK_LINE = "CPU attention: the PyTorch path"


def _inputs(lens: list[int], q_heads: int, kv_heads: int, dim: int, dtype: torch.dtype, seed: int = 0,
            block: int = BLOCK):
    """Random caches with more blocks than needed; each sequence's table is a random set of them, padded past its
    context with block ids that must be ignored."""
    gen = torch.Generator().manual_seed(seed)
    width = max(-(-n // block) for n in lens) + 1
    num_blocks = len(lens) * width + 3
    k_cache = torch.randn(num_blocks, block, kv_heads, dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks, block, kv_heads, dim, generator=gen).to(dtype)
    order = torch.randperm(num_blocks, generator=gen)
    tables = order[: len(lens) * width].view(len(lens), width).int()
    q = torch.randn(len(lens), q_heads, dim, generator=gen).to(dtype)
    return q, k_cache, v_cache, tables, torch.tensor(lens, dtype=torch.int32)


RAGGED = [1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 7, 40 * BLOCK]


@pytest.mark.parametrize("q_heads, kv_heads", [(4, 4), (8, 2), (10, 2)], ids=["mha", "gqa4", "gqa5"])
@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("splits", [0, 1, 3], ids=["auto-split", "one-split", "three-splits"])
def test_extension_matches_the_reference_over_ragged_contexts(ext, q_heads, kv_heads, dim, dtype, splits):
    q, k_cache, v_cache, tables, lens = _inputs(RAGGED, q_heads, kv_heads, dim, dtype)
    scale = dim**-0.5
    got = ext.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale, splits)
    assert got.dtype == dtype and got.shape == q.shape
    # The fp32 reference on the same (bf16-representable) values: the extension accumulates in fp32, so a bf16
    # result may differ from it by one rounding to bf16 and no more.
    expected = reference(q.float(), k_cache.float(), v_cache.float(), tables, lens, scale)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-6)
    else:
        assert ((got.float() - expected).abs() <= expected.abs() * 2**-8 + 1e-5).all()


@pytest.mark.parametrize("block", [4, 8, 32, 48], ids=lambda b: f"block{b}")
@pytest.mark.parametrize("q_heads, kv_heads, dim", [(9, 3, 64), (12, 1, 64), (8, 2, 96), (4, 1, 128)],
                         ids=["gqa3", "gqa12-two-chunks", "dim96-generic", "dim128-gqa4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_other_block_sizes_groups_and_head_sizes(ext, block, q_heads, kv_heads, dim, dtype):
    """Blocks smaller than the kernel's 16-token tile (partial tiles) and larger (two or three tiles per block), GQA
    groups that take one or two register chunks, and a head size served by the general loop."""
    lens = [1, block - 1, block + 1, 3 * block + 5, 17, 33, 200]
    q, k_cache, v_cache, tables, lens_t = _inputs(lens, q_heads, kv_heads, dim, dtype, seed=block, block=block)
    scale = dim**-0.5
    got = ext.paged_decode_attention(q, k_cache, v_cache, tables, lens_t, scale)
    expected = reference(q.float(), k_cache.float(), v_cache.float(), tables, lens_t, scale)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-6)
    else:
        assert ((got.float() - expected).abs() <= expected.abs() * 2**-8 + 1e-5).all()


def test_the_engine_dispatch_uses_the_extension_and_agrees_with_the_pytorch_path(ext):
    q, k_cache, v_cache, tables, lens = _inputs(RAGGED, 8, 2, 64, torch.float32, seed=1)
    through_dispatch = kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125)
    assert cpu_extension.status() == "extension"
    torch.testing.assert_close(through_dispatch, ext.paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125))
    torch.testing.assert_close(
        through_dispatch, kernels.torch_paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125),
        rtol=1e-5, atol=2e-6,
    )


def test_bad_tables_and_lengths_raise_instead_of_reading_out_of_bounds(ext):
    q, k_cache, v_cache, tables, lens = _inputs([20, 3], 4, 2, 64, torch.float32)
    bad = tables.clone()
    bad[0, 1] = k_cache.shape[0]
    with pytest.raises(RuntimeError, match="block id .* out of range"):
        ext.paged_decode_attention(q, k_cache, v_cache, bad, lens, 0.125)
    with pytest.raises(RuntimeError, match="context length 0 of sequence 1"):
        ext.paged_decode_attention(q, k_cache, v_cache, tables, torch.tensor([20, 0], dtype=torch.int32), 0.125)
    with pytest.raises(RuntimeError, match="multiple of kv heads"):
        ext.paged_decode_attention(q[:, :3], k_cache, v_cache, tables, lens, 0.125)


def _fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(FALLBACK_LINE)]


def test_the_env_var_forces_the_pytorch_path_with_one_log_line(ext, monkeypatch, caplog):
    monkeypatch.setenv(cpu_extension.ENV_CHOICE, "torch")
    cpu_extension.reset()
    q, k_cache, v_cache, tables, lens = _inputs(RAGGED, 8, 2, 64, torch.float32, seed=2)
    with caplog.at_level(logging.INFO, logger=cpu_extension.__name__):
        first = kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125)
        kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125)
    assert cpu_extension.ops() is None
    assert _fallback_lines(caplog) == [f"{FALLBACK_LINE} (index_select + SDPA), not the C++ extension: "
                                       f"${cpu_extension.ENV_CHOICE}=torch"]
    torch.testing.assert_close(first, kernels.torch_paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125))
    cpu_extension.reset()


def test_a_missing_library_falls_back_and_says_how_to_build_it(ext, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv(cpu_extension.ENV_DIR, str(tmp_path))
    cpu_extension.reset()
    with caplog.at_level(logging.INFO, logger=cpu_extension.__name__):
        assert cpu_extension.ops() is None
        assert cpu_extension.ops() is None
    (line,) = _fallback_lines(caplog)
    assert "not built" in line and str(tmp_path) in line and "python -m appliance.runtime.cpu_extension build" in line
    cpu_extension.reset()


def test_a_library_that_fails_to_load_falls_back(ext, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv(cpu_extension.ENV_DIR, str(tmp_path))
    cpu_extension.library_path().parent.mkdir(parents=True)
    cpu_extension.library_path().write_bytes(b"not an ELF file")
    cpu_extension.reset()
    with caplog.at_level(logging.INFO, logger=cpu_extension.__name__):
        assert cpu_extension.ops() is None
    (line,) = _fallback_lines(caplog)
    assert "failed to load" in line
    cpu_extension.reset()


def test_greedy_tokens_match_transformers_with_and_without_the_extension(ext, checkpoint_factory, hf_reference,
                                                                         monkeypatch):
    """Whole engine, fp32: a GQA model (8 query heads over 2 KV heads) decoding across many 4-token blocks. (In bf16
    the two paths round differently, the PyTorch one rounding scores and probabilities to bf16, so bf16 greedy
    tokens may part where logits nearly tie; the kernel test above bounds the extension's bf16 error instead.)"""
    path = checkpoint_factory("llama", num_attention_heads=8, num_key_value_heads=2)
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    expected = hf_reference(path, PROMPTS, 24)
    for choice in ("auto", "torch"):
        monkeypatch.setenv(cpu_extension.ENV_CHOICE, choice)
        cpu_extension.reset()
        llm = LLM(str(path), device="cpu", block_size=4, num_kv_blocks=256)
        assert [o.token_ids for o in llm.generate(PROMPTS, params)] == expected, choice
        assert cpu_extension.status().startswith("extension" if choice == "auto" else "torch")
    cpu_extension.reset()


@pytest.mark.parametrize("tokens", [1, 7, 300], ids=lambda t: f"{t}tokens")
def test_rotary_and_cache_write_give_the_reference_bits(ext, tokens):
    """One pass over qkv: q and k rotated exactly as model/llama.py's rotate_qk (itself the bits of Hugging Face's
    rotary), k and v written where index_copy_ would put them, nothing else in the caches touched."""
    from appliance.runtime.model.llama import rotate_qk
    from appliance.runtime.model.rope import cos_sin_table

    q_heads, kv_heads, dim = 9, 3, 64
    gen = torch.Generator().manual_seed(tokens)
    qkv = torch.randn(tokens, (q_heads + 2 * kv_heads) * dim, generator=gen)
    cos_t, sin_t = cos_sin_table(dim, 10000.0, None, 1024)
    positions = torch.randint(0, 1024, (tokens,), generator=gen)
    sin_signed = torch.cat([-sin_t[:, : dim // 2], sin_t[:, dim // 2 :]], dim=-1)
    cos, sin = cos_t[positions].float(), sin_signed[positions].float()
    slots = torch.randperm(40 * BLOCK, generator=gen)[:tokens]
    k_cache, v_cache = torch.randn(40, BLOCK, kv_heads, dim, generator=gen), torch.randn(40, BLOCK, kv_heads, dim,
                                                                                          generator=gen)
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    q, k = ext.rotary_write_kv(qkv, cos, sin, slots, k_cache, v_cache, q_heads)
    qk = rotate_qk(qkv[:, : (q_heads + kv_heads) * dim].view(tokens, -1, dim), cos, sin)
    assert torch.equal(q, qk[:, :q_heads]) and torch.equal(k, qk[:, q_heads:])
    k_ref.view(-1, kv_heads, dim).index_copy_(0, slots, qk[:, q_heads:])
    v_new = qkv[:, (q_heads + kv_heads) * dim :].view(tokens, kv_heads, dim)
    v_ref.view(-1, kv_heads, dim).index_copy_(0, slots, v_new)
    assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)
    with pytest.raises(RuntimeError, match="outside the cache"):
        ext.rotary_write_kv(qkv, cos, sin, slots + 40 * BLOCK, k_cache, v_cache, q_heads)
