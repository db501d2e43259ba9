"""The plan before a neuron compile: TP, buckets, memory, graphs, and refusals with their fix."""
import pytest

from appliance.runtime.neuron.instances import GIB, INSTANCES, get_instance
from appliance.runtime.neuron.memory import parameter_count
from appliance.runtime.neuron.model_shape import ModelShape
from appliance.runtime.neuron.options import NeuronCompileOptions, NeuronOptionsError
from appliance.runtime.neuron.plan import default_max_model_len, make_plan
from tests.neuron.conftest import big_config

LLAMA_3_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 8192, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
}


def test_instances_carry_aws_published_host_memory():
    assert {name: i.host_memory_gib for name, i in INSTANCES.items()} == {
        "inf2.xlarge": 16, "inf2.8xlarge": 128, "inf2.24xlarge": 384, "inf2.48xlarge": 768,
        "trn1.2xlarge": 32, "trn1.32xlarge": 512,
    }
    assert get_instance("inf2.xlarge").usable_host_memory_bytes < 16 * GIB


def test_llama_3_8b_has_eight_billion_parameters():
    assert 8.0e9 < parameter_count(ModelShape.from_config(LLAMA_3_8B)) < 8.1e9


def test_llama_3_8b_on_inf2_xlarge_is_refused_for_host_memory_with_the_fix():
    plan = make_plan(LLAMA_3_8B, "inf2.xlarge", model="llama-3-8b")
    assert not plan.fits
    [problem] = plan.problems
    assert problem.what == "host memory"
    assert "compiling needs about 25.9 GiB of host memory" in problem.reason
    assert "inf2.xlarge has 16 GiB" in problem.reason
    assert problem.fix.startswith("use pre-sharded weights or inf2.8xlarge")
    assert plan.device.fits and plan.tp_degree == 2  # the cores could hold it; the host cannot load and shard it
    text = plan.describe()
    assert "REFUSED" in text and "fix: use pre-sharded weights or inf2.8xlarge" in text


def test_llama_3_8b_on_inf2_8xlarge_fits_at_the_smallest_tp():
    plan = make_plan(LLAMA_3_8B, "inf2.8xlarge")
    assert plan.fits and plan.problems == () and plan.tp_degree == 2
    assert "the smallest valid degree that fits" in plan.tp_chosen  # tp 1: 15 GiB of weights on one 16 GiB core
    assert plan.options.max_model_len == 2048
    assert plan.buckets.context_lengths == (512, 1024, 2048)  # prefix caching: 512-token buckets and up
    assert plan.prefix_buckets == (512, 1024, 2048)
    assert plan.graphs.context_encoding == 12 and plan.graphs.token_generation == 5
    assert plan.kv_blocks == 8 * 2048 // 32
    assert "fits" in plan.describe().splitlines()[0] and "not a measurement" in plan.describe()


def test_default_length_is_2048_not_the_models_8192():
    assert default_max_model_len(8192) == 2048 and default_max_model_len(512) == 512
    long = make_plan(LLAMA_3_8B, "inf2.8xlarge", {"max_model_len": 8192})
    assert long.graphs.context_encoding == 30  # 5 lengths (512..8192) x (no prefix + 5 prefix lengths)
    assert long.compile_seconds_estimate > make_plan(LLAMA_3_8B, "inf2.8xlarge").compile_seconds_estimate


def test_given_tp_that_does_not_fit_device_memory_is_a_problem_naming_the_option():
    plan = make_plan(LLAMA_3_8B, "inf2.8xlarge", {"tp_degree": 1})
    assert not plan.fits and plan.problems[0].what == "tp_degree"
    assert "does not fit at tp_degree=1" in plan.problems[0].reason
    assert plan.problems[0].fix.startswith("raise tp_degree (to 2)")


def test_model_too_big_for_any_tp_picks_the_largest_and_says_so():
    plan = make_plan(big_config(), "inf2.8xlarge")  # 70B on 2 cores
    assert not plan.fits and plan.tp_degree == 2 and "device memory does not fit" in plan.tp_chosen


def test_contiguous_layout_counts_token_graphs_per_batch_bucket():
    plan = make_plan(LLAMA_3_8B, "inf2.8xlarge", {"kv_layout": "contiguous", "batch_sizes": [1, 4, 8]})
    assert plan.graphs.context_encoding == 5 and plan.graphs.token_generation == 15 and plan.kv_blocks == 0


def test_without_an_instance_host_memory_is_not_checked():
    plan = make_plan(LLAMA_3_8B)
    assert plan.fits and plan.instance is None and "not checked" in plan.notes[0]


def test_malformed_options_are_errors_not_problems():
    with pytest.raises(NeuronOptionsError, match="bogus"):
        make_plan(LLAMA_3_8B, "inf2.8xlarge", {"bogus": 1})


def test_compile_validation_with_an_instance_refuses_host_memory():
    with pytest.raises(NeuronOptionsError, match="use pre-sharded weights or inf2.8xlarge") as e:
        NeuronCompileOptions(tp_degree=2).validate(LLAMA_3_8B, "inf2.xlarge")
    assert e.value.field == "instance"
    NeuronCompileOptions(tp_degree=2).validate(LLAMA_3_8B, "inf2.8xlarge")


def test_plan_as_json_has_the_numbers():
    data = make_plan(LLAMA_3_8B, "inf2.xlarge").to_dict()
    assert data["fits"] is False and data["problems"][0]["what"] == "host memory"
    host = data["host_memory"]
    assert host["compile_bytes"] > host["usable_bytes"] > host["load_bytes"]
    assert data["graphs"]["total"] == 17
