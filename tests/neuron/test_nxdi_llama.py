"""The appliance's NxD Inference Llama class, built against a labelled stand-in of NxD Inference 0.8's Llama classes
(same names and constructor signatures, toy bodies): which modules each kernel replaces, that disabled kernels keep
the stock modules, and that the kernel modules compute what the stock ones do, per tensor-parallel rank. The kernels
run on the NumPy simulator through kernel_hook.simulated_kernel_table. Nothing here proves the class compiles
under the real SDK."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from appliance.runtime.neuron.kernel_hook import KernelCallCounter, simulated_kernel_table
from appliance.runtime.neuron.nxdi_llama import OPERATIONS, appliance_llama_class, check_config

# ---- TEST DOUBLE: a stand-in for neuronx_distributed_inference.models.llama.modeling_llama (NxDI 0.8). ----------


class StandInRMSNorm(nn.Module):  # stands in for CustomRMSNorm (modules/custom_calls.py)
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(hidden_size)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class StandInRotary(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.inv_freq = 1.0 / base ** (torch.arange(0, dim, 2).float() / dim)

    def forward(self, x, position_ids):
        freqs = position_ids.float()[..., None] * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class NeuronLlamaMLP(nn.Module):
    def __init__(self, config, tensor_model_parallel_group=None):
        super().__init__()
        self.config, self.neuron_config = config, config.neuron_config
        self.tensor_model_parallel_group = tensor_model_parallel_group
        self.sequence_parallel_enabled = False
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def _native_mlp(self, x, adapter_ids=None):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def forward(self, x, rmsnorm=None, residual=None, adapter_ids=None):
        return (self._native_mlp(x, adapter_ids=adapter_ids), None)


class NeuronLlamaAttention(nn.Module):
    def __init__(self, config, tensor_model_parallel_group=None):
        super().__init__()
        self.neuron_config = config.neuron_config
        self.num_heads, self.num_key_value_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.rotary_emb = StandInRotary(self.head_dim)
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=False)

    def apply_rotary_embedding(self, Q, K, V, position_ids, cos_cache, sin_cache, use_polar_compatible_rope):
        if cos_cache is None or sin_cache is None:
            cos_cache, sin_cache = self.rotary_emb(V, position_ids)
        cos, sin = cos_cache.unsqueeze(1), sin_cache.unsqueeze(1)
        return Q * cos + _rotate_half(Q) * sin, K * cos + _rotate_half(K) * sin, cos_cache, sin_cache

    def attention_tokengen(self, Q, K, V, attention_mask, position_ids, past_key_value, active_mask, **kwargs):
        group = self.num_heads // self.num_key_value_heads
        k = torch.cat([past_key_value[0], K], dim=2).repeat_interleave(group, dim=1)
        v = torch.cat([past_key_value[1], V], dim=2).repeat_interleave(group, dim=1)
        prior = past_key_value[0].shape[2]
        valid = torch.arange(prior + 1)[None, :] < position_ids[:, -1:]  # prior tokens in the context
        valid[:, prior] = True  # the active token
        scores = Q @ k.transpose(2, 3) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        return scores.softmax(-1) @ v

    def forward(self, hidden_states, position_ids=None, past_key_value=None, kv_mgr=None, **kwargs):
        b, s, _ = hidden_states.shape
        Q = self.q_proj(hidden_states).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        K = self.k_proj(hidden_states).view(b, s, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        V = self.v_proj(hidden_states).view(b, s, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        Q, K, _, _ = self.apply_rotary_embedding(Q, K, V, position_ids, None, None, False)
        return self.attention_tokengen(Q, K, V, None, position_ids, past_key_value, None, **kwargs)


class NeuronLlamaDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.neuron_config = config.neuron_config
        self.self_attn = NeuronLlamaAttention(config=config)
        self.init_mlp(config)
        self.input_layernorm = get_rmsnorm_cls(config.hidden_size, None, config.rms_norm_eps)
        self.post_attention_layernorm = get_rmsnorm_cls(config.hidden_size, None, config.rms_norm_eps)

    def init_mlp(self, config):
        self.mlp = NeuronLlamaMLP(config, get_tp_group(config))


class NeuronLlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config, self.neuron_config, self.sequence_dimension = config, config.neuron_config, 1
        self.setup_attr_for_model(config)
        self.init_model(config)

    def setup_attr_for_model(self, config):
        self.on_device_sampling = False

    def init_model(self, config):
        self.layers = nn.ModuleList(NeuronLlamaDecoderLayer(c) for c in get_updated_configs(config))
        self.norm = get_rmsnorm_cls(config.hidden_size, None, config.rms_norm_eps)


class LlamaInferenceConfig:
    pass


class NeuronLlamaForCausalLM:
    _model_cls = NeuronLlamaModel

    @classmethod
    def get_config_cls(cls):
        return LlamaInferenceConfig


def get_rmsnorm_cls(hidden_size=None, unpadded_hidden_size=None, eps=1e-5):
    return StandInRMSNorm(hidden_size, eps)


def get_tp_group(config):
    return "tp-group"


def get_updated_configs(config):
    return [config] * config.num_hidden_layers


STAND_IN_MODELING_LLAMA = SimpleNamespace(
    NeuronLlamaForCausalLM=NeuronLlamaForCausalLM, NeuronLlamaModel=NeuronLlamaModel,
    NeuronLlamaDecoderLayer=NeuronLlamaDecoderLayer, NeuronLlamaAttention=NeuronLlamaAttention,
    NeuronLlamaMLP=NeuronLlamaMLP, LlamaInferenceConfig=LlamaInferenceConfig, get_rmsnorm_cls=get_rmsnorm_cls,
    get_updated_configs=get_updated_configs, get_tp_group=get_tp_group, ParallelEmbedding=None,
    ColumnParallelLinear=None, parallel_state=SimpleNamespace(model_parallel_is_initialized=lambda: False),
)


class StandInMappings:  # stands in for neuronx_distributed.parallel_layers.mappings; records the all-reduces
    def __init__(self):
        self.reduced = []

    def reduce_from_tensor_model_parallel_region(self, x, process_group=None):
        self.reduced.append((x.clone(), process_group))
        return x


def stand_in_api():
    return SimpleNamespace(modeling_llama=STAND_IN_MODELING_LLAMA, mappings=StandInMappings())


def stand_in_config(**neuron_config):
    nc = dict(tp_degree=1, torch_dtype=torch.float32, mlp_cp_degree=1, is_block_kv_layout=True, is_prefix_caching=True,
              pa_block_size=4, rpl_reduce_dtype=None)
    nc.update(neuron_config)
    return SimpleNamespace(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, rms_norm_eps=1e-5, vocab_size=64, pad_token_id=0, num_hidden_layers=2,
                           hidden_act="silu", neuron_config=SimpleNamespace(**nc))

# ---- end of TEST DOUBLE ------------------------------------------------------------------------------------------


def build(kernels, counter=None):
    api = stand_in_api()
    impl = simulated_kernel_table(kernels, counter if counter is not None else KernelCallCounter())
    return api, appliance_llama_class(api, tuple(kernels), implementations=impl)


def test_the_class_records_its_kernels_and_keeps_the_llama_config_class():
    _, cls = build(["swiglu_mlp", "rms_norm"])
    assert issubclass(cls, NeuronLlamaForCausalLM)
    assert cls.appliance_kernels == ("rms_norm", "swiglu_mlp")
    assert cls.get_config_cls() is LlamaInferenceConfig
    assert issubclass(cls._model_cls, NeuronLlamaModel)


def test_every_enabled_kernel_has_its_module_wired_in():
    _, cls = build(OPERATIONS)
    model = cls._model_cls(stand_in_config())
    m = cls.modules
    assert len(model.layers) == 2 and all(isinstance(layer, m.decoder_layer) for layer in model.layers)
    layer = model.layers[0]
    assert isinstance(layer.input_layernorm, m.rms_norm) and isinstance(layer.post_attention_layernorm, m.rms_norm)
    assert isinstance(model.norm, m.rms_norm)
    assert isinstance(layer.mlp, m.mlp) and layer.mlp.tensor_model_parallel_group == "tp-group"
    assert isinstance(layer.self_attn, m.attention)


def test_disabled_kernels_keep_the_stock_modules():
    _, cls = build(["paged_decode_attention"])
    model = cls._model_cls(stand_in_config())
    layer = model.layers[0]
    assert type(layer.mlp) is NeuronLlamaMLP
    assert type(layer.input_layernorm) is StandInRMSNorm and type(model.norm) is StandInRMSNorm
    assert isinstance(layer.self_attn, cls.modules.attention)
    _, none = build([])
    layer = none._model_cls(stand_in_config()).layers[0]
    assert none.appliance_kernels == () and type(layer.self_attn) is NeuronLlamaAttention


def test_kernel_norm_has_the_stock_parameter_names_and_output():
    counter = KernelCallCounter()
    _, cls = build(["rms_norm"], counter)
    stock, kernel = StandInRMSNorm(32, 1e-5), cls.modules.rms_norm(32, 1e-5)
    assert list(kernel.state_dict()) == list(stock.state_dict()) == ["weight"]
    with torch.no_grad():
        stock.weight.normal_()
        kernel.load_state_dict(stock.state_dict())
    x = torch.randn(2, 3, 32)
    torch.testing.assert_close(kernel(x), stock(x), rtol=1e-5, atol=1e-5)
    assert counter["rms_norm"] == 1


def test_kernel_mlp_per_rank_partials_all_reduce_to_the_full_mlp():
    counter = KernelCallCounter()
    api, cls = build(["swiglu_mlp"], counter)
    config = stand_in_config()
    full = NeuronLlamaMLP(config)
    half = SimpleNamespace(**{**vars(config), "intermediate_size": 24})
    x = torch.randn(2, 3, 32)
    for rank in range(2):  # column-parallel gate/up rows and row-parallel down columns of this rank
        shard = cls.modules.mlp(half, "tp-group")
        rows = slice(24 * rank, 24 * (rank + 1))
        with torch.no_grad():
            shard.gate_proj.weight.copy_(full.gate_proj.weight[rows])
            shard.up_proj.weight.copy_(full.up_proj.weight[rows])
            shard.down_proj.weight.copy_(full.down_proj.weight[:, rows])
        out, residual = shard(x)
        assert out.shape == x.shape and residual is None
    partials = [p for p, group in api.mappings.reduced]
    assert len(partials) == 2 and all(group == "tp-group" for _, group in api.mappings.reduced)
    with torch.no_grad():
        torch.testing.assert_close(sum(partials).view(2, 3, 32), full(x)[0], rtol=1e-4, atol=1e-4)
    assert counter["swiglu_mlp"] == 2


class StandInBlockKVManager:  # TEST DOUBLE for BlockKVCacheManager: [blocks, block_size, kv_heads, head_dim] caches
    def __init__(self, k_cache, v_cache):
        self.caches = [(k_cache, v_cache)]

    def update_kv_by_layer_id(self, idx, kv_per_layer, scatter_index=None, kvcache_buffer=None, **kwargs):
        out = []
        for latest, cache in zip(kv_per_layer, self.caches[idx]):
            rows = cache.reshape(-1, cache.shape[-2] * cache.shape[-1]).clone()
            rows[scatter_index.reshape(-1)] = latest.permute(0, 2, 1, 3).reshape(-1, rows.shape[1])
            out.append(rows.view(cache.shape))
        return tuple(out)


def test_kernel_attention_rotates_and_decodes_through_block_tables_like_the_stock_attention():
    counter = KernelCallCounter()
    _, cls = build(["rotary_embedding", "paged_decode_attention"], counter)
    config = stand_in_config()
    stock, kernel = NeuronLlamaAttention(config), cls.modules.attention(config)
    kernel.load_state_dict(stock.state_dict())
    k_cache, v_cache = torch.randn(6, 4, 2, 8), torch.randn(6, 4, 2, 8)
    block_table = torch.tensor([[3, 1], [5, 0]])  # sequence 0: 6 cached tokens; sequence 1: 2
    position_ids = torch.tensor([[6], [2]])
    slots = torch.tensor([[1 * 4 + 2], [5 * 4 + 2]])  # where this step's token goes
    gathered = [c[block_table.reshape(-1)].view(2, 8, 2, 8).permute(0, 2, 1, 3) for c in (k_cache, v_cache)]
    x = torch.randn(2, 1, 32)
    with torch.no_grad():
        want = stock(x, position_ids=position_ids, past_key_value=gathered)
        kv_mgr = StandInBlockKVManager(k_cache, v_cache)
        got = kernel(x, position_ids=position_ids, past_key_value=gathered, kv_mgr=kv_mgr,
                     idx=0, scatter_index=slots, active_block_table=block_table)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert counter == {"rotary_embedding": 1, "paged_decode_attention": 1}
    assert kernel._kv_mgr is None


def test_without_the_block_layout_arguments_token_generation_uses_the_stock_path():
    counter = KernelCallCounter()
    _, cls = build(["paged_decode_attention"], counter)
    config = stand_in_config()
    kernel = cls.modules.attention(config)
    cache = [torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)]
    kernel(torch.randn(1, 1, 32), position_ids=torch.tensor([[4]]), past_key_value=cache)
    assert counter["paged_decode_attention"] == 0


def test_configs_that_would_bypass_a_kernel_are_refused():
    with pytest.raises(ValueError, match="paged_decode_attention: needs the block KV layout"):
        check_config(stand_in_config(is_block_kv_layout=False), ("paged_decode_attention",))
    with pytest.raises(ValueError, match="rms_norm: NxD Inference's QKV kernel fuses the input norm"):
        check_config(stand_in_config(qkv_kernel_enabled=True), ("rms_norm",))
    with pytest.raises(ValueError, match="swiglu_mlp: not with mlp_kernel_enabled"):
        check_config(stand_in_config(mlp_kernel_enabled=True), ("swiglu_mlp",))
    check_config(stand_in_config(mlp_kernel_enabled=True), ("rms_norm",))
    _, cls = build(["paged_decode_attention"])
    with pytest.raises(ValueError, match="block KV layout"):
        cls._model_cls(stand_in_config(is_prefix_caching=False))


def test_unknown_kernels_are_refused():
    with pytest.raises(ValueError, match="unknown kernel 'softmax'"):
        appliance_llama_class(stand_in_api(), ("softmax",), implementations={})


def test_without_implementations_the_kernels_are_re_jitted_for_torch_xla():
    import nki_kernels

    jitted = []
    api = stand_in_api()
    api.get_platform_target = lambda: "trn1"
    api.peel_decorations = lambda k: k.__wrapped__
    api.nki_jit = lambda f, **kw: jitted.append((f, kw)) or f
    appliance_llama_class(api, ("rms_norm",))
    assert jitted == [(nki_kernels.rms_norm.kernel.__wrapped__, {"mode": "torchxla", "platform_target": "trn1"})]


def test_the_backend_compiles_with_the_appliance_class_when_kernels_are_on(monkeypatch):
    """On the real SDK path (not the emulator) a kernels artifact is built and loaded with the appliance's class."""
    from appliance.runtime.neuron import sdk
    from appliance.runtime.neuron.nxdi_backend import NxdiBackend
    from appliance.runtime.neuron.options import NeuronCompileOptions

    api = SimpleNamespace(model_classes={"llama": NeuronLlamaForCausalLM}, emulated=False)
    monkeypatch.setattr(sdk, "load_nxdi_kernel_api", lambda: SimpleNamespace(**vars(stand_in_api()),
                                                                              nki_jit=None, get_platform_target=None,
                                                                              peel_decorations=None))
    monkeypatch.setattr("appliance.runtime.neuron.nxdi_llama.traced_kernels", lambda api, ops: {})
    with_kernels = NxdiBackend(NeuronCompileOptions(kernels=("rms_norm",)), "llama", api)
    assert with_kernels.model_cls.appliance_kernels == ("rms_norm",)
    assert issubclass(with_kernels.model_cls, NeuronLlamaForCausalLM)
    assert NxdiBackend(NeuronCompileOptions(), "llama", api).model_cls is NeuronLlamaForCausalLM
