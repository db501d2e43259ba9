"""The decoder's CPU fast paths (packed linears, fused MLP, one-pass rotary) compute what the plain model does."""
from __future__ import annotations

import pytest
import torch

from appliance.runtime import kernels
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, DecodeGroup, PrefillChunk
from appliance.runtime.model.linear import packing_usable
from appliance.runtime.model.llama import LlamaForCausalLM, rotate_qk
from appliance.runtime.model.loader import load_hf_config, load_weights
from appliance.runtime.model.rope import cos_sin_table
from nki_kernels.rotary_embedding.reference import rotary_embedding


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_pass_rotary_gives_the_references_bits(dtype):
    cos, sin = (t.to(dtype) for t in cos_sin_table(64, 10000.0, None, 128))
    sin_signed = torch.cat([-sin[:, :32], sin[:, 32:]], dim=-1)
    positions = torch.randint(0, 128, (37,), generator=torch.Generator().manual_seed(0))
    qk = torch.randn(37, 10, 64).to(dtype)
    q, k = rotary_embedding(qk[:, :8], qk[:, 8:], cos[positions], sin[positions])
    out = rotate_qk(qk, cos[positions], sin_signed[positions])
    assert torch.equal(out[:, :8], q) and torch.equal(out[:, 8:], k)


def _two_steps(model: LlamaForCausalLM, args: ModelArgs, dtype: torch.dtype) -> list[torch.Tensor]:
    """Prefill two sequences (6 and 3 tokens; blocks of 4), then decode one token each; logits of every token."""
    shape = (4, 4, args.num_kv_heads, args.head_dim)
    caches = [(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)) for _ in range(args.num_layers)]
    prefill = AttentionMetadata(
        slot_mapping=torch.tensor([0, 1, 2, 3, 4, 5, 8, 9, 10]), num_decode_tokens=0,
        prefills=[PrefillChunk(0, 6, 6, torch.tensor([0, 1])), PrefillChunk(6, 9, 3, torch.tensor([2]))],
    )
    decode = AttentionMetadata(
        slot_mapping=torch.tensor([6, 11]), num_decode_tokens=2,
        decode_groups=[DecodeGroup(0, 2, torch.tensor([[0, 1], [2, 0]], dtype=torch.int32),
                                   torch.tensor([7, 4], dtype=torch.int32))],
    )
    with torch.inference_mode():
        h1 = model.forward(torch.tensor([5, 9, 17, 33, 65, 129, 7, 11, 13]), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2]),
                           prefill, caches)
        h2 = model.forward(torch.tensor([3, 4]), torch.tensor([6, 3]), decode, caches)
        return [model.compute_logits(h1), model.compute_logits(h2)]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_model_matches_the_plain_model(checkpoint_factory, arch, dtype):
    if not packing_usable(dtype, "cpu"):
        pytest.skip(f"no oneDNN {dtype} on this CPU")
    path = checkpoint_factory(arch)
    args = ModelArgs.from_hf(load_hf_config(path))
    weights = load_weights(path, dtype)
    plain = LlamaForCausalLM(args, weights, 64, "cpu")
    packed = LlamaForCausalLM(args, weights, 64, "cpu", pack_weights=True)
    for got, want in zip(_two_steps(packed, args, dtype), _two_steps(plain, args, dtype)):
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        else:  # the packed bfloat16 GEMM gives F.linear's bits and the elementwise steps are the same ones
            assert torch.equal(got, want)


def test_a_packed_model_hands_installed_kernels_its_plain_weights(checkpoint_factory):
    path = checkpoint_factory("llama")
    args = ModelArgs.from_hf(load_hf_config(path))
    weights = load_weights(path, torch.float32)
    model = LlamaForCausalLM(args, weights, 64, "cpu", pack_weights=True)
    seen = []

    def swiglu(x, w_gate, w_up, w_down):
        seen.append((w_gate, w_up, w_down))
        return kernels.REFERENCES["swiglu_mlp"](x, w_gate, w_up, w_down)

    expected = _two_steps(model, args, torch.float32)
    kernels.use_implementations({"swiglu_mlp": swiglu})
    try:
        got = _two_steps(model, args, torch.float32)
    finally:
        kernels.use_implementations(None)
    assert len(seen) == 2 * args.num_layers
    assert torch.equal(seen[0][0], weights["model.layers.0.mlp.gate_proj.weight"])
    assert torch.equal(seen[0][2], weights["model.layers.0.mlp.down_proj.weight"])
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden", [64, 512, 896, 100])
@pytest.mark.parametrize("path", ["extension", "torch"])
def test_float32_fused_rms_norm_matches_the_reference(hidden, path, monkeypatch):
    """torch's fused RMSNorm (the extension not loaded) gives the reference's bits; the extension's one pass differs
    from them at most in the last bits of the sum of squares (a few units in the last place)."""
    from appliance.runtime import cpu_extension
    from appliance.runtime.model.llama import rms_norm_fp32

    if path == "torch":
        monkeypatch.setenv(cpu_extension.ENV_CHOICE, "torch")
    cpu_extension.reset()
    try:
        assert (cpu_extension.ops() is not None) == (path == "extension"), cpu_extension.status()
        g = torch.Generator().manual_seed(hidden)
        for rows in (1, 16, 300):
            x, w = torch.randn(rows, hidden, generator=g) * 3, torch.rand(hidden, generator=g) + 0.5
            got, expected = rms_norm_fp32(x, w, 1e-6), kernels.REFERENCES["rms_norm"](x, w, 1e-6)
            if path == "torch":
                assert torch.equal(got, expected)
            else:
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    finally:
        cpu_extension.reset()
