import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from nki_kernels import simulate, swiglu_mlp
from tests.nki_kernels.conftest import assert_matches, random, to_torch

# (tokens, hidden, intermediate): decode-sized; partial tiles everywhere; three token tiles with a 512-wide output chunk
SHAPES = [(1, 64, 96), (130, 200, 300), (260, 640, 256)]


@pytest.mark.simulator
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference(rng, shape, dtype):
    tokens, hidden, inter = shape
    x = random(rng, (tokens, hidden), dtype)
    w_gate = random(rng, (inter, hidden), dtype, scale=hidden**-0.5)
    w_up = random(rng, (inter, hidden), dtype, scale=hidden**-0.5)
    w_down = random(rng, (hidden, inter), dtype, scale=inter**-0.5)
    out = simulate(swiglu_mlp.kernel, x, w_gate, w_up, w_down)
    expected = swiglu_mlp.reference(to_torch(x), to_torch(w_gate), to_torch(w_up), to_torch(w_down))
    assert_matches(out, expected, dtype, "swiglu_mlp")


def test_reference_equals_transformers_llama_mlp():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=48, intermediate_size=80, num_attention_heads=4, hidden_act="silu", mlp_bias=False)
    mlp = LlamaMLP(config)
    x = torch.randn(5, 48)
    with torch.no_grad():
        expected = mlp(x)
        got = swiglu_mlp.reference(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.simulator
def test_kernel_rejects_transposed_down_weight(rng):
    x, w = random(rng, (2, 32), "float32"), random(rng, (48, 32), "float32")
    with pytest.raises(ValueError, match="w_down"):
        simulate(swiglu_mlp.kernel, x, w, w, random(rng, (48, 32), "float32"))
