"""Which NKI kernels a compile may put into the NxD Inference graph on Inf2/Trn1 (plain logic, no SDK)."""
import pytest

import nki_kernels
from appliance.runtime import kernels
from appliance.runtime.neuron import kernel_support
from appliance.runtime.neuron.kernel_support import KernelInfo, KernelNotSupported, platform_of, resolve_kernels


def test_every_dispatch_operation_has_a_support_entry():
    assert tuple(kernel_support.KERNELS) == kernels.OPERATIONS == nki_kernels.OPERATIONS


def test_all_kernels_with_the_block_layout():
    assert resolve_kernels(True, platform="inf2", dtype="bfloat16", block_layout=True) == kernels.OPERATIONS


def test_all_kernels_without_the_block_layout_leaves_paged_attention_out():
    got = resolve_kernels(True, platform="trn1", dtype="float32", block_layout=False)
    assert got == ("rms_norm", "rotary_embedding", "swiglu_mlp")


@pytest.mark.parametrize("requested", [False, None, [], ()])
def test_nothing_requested_gives_no_kernels(requested):
    assert resolve_kernels(requested, platform="inf2", dtype="bfloat16", block_layout=False) == ()


def test_a_list_is_returned_in_table_order_without_duplicates():
    got = resolve_kernels(["swiglu_mlp", "rms_norm", "swiglu_mlp"], platform="inf2", dtype="bfloat16",
                          block_layout=False)
    assert got == ("rms_norm", "swiglu_mlp")


def test_naming_paged_attention_with_the_contiguous_layout_says_why():
    with pytest.raises(KernelNotSupported, match="'paged_decode_attention'.*kv_layout='block'"):
        resolve_kernels(["paged_decode_attention"], platform="inf2", dtype="bfloat16", block_layout=False)


def test_an_unknown_kernel_is_named():
    with pytest.raises(KernelNotSupported, match="unknown NKI kernel 'softmax'; known: rms_norm"):
        resolve_kernels(["softmax"], platform="inf2", dtype="bfloat16", block_layout=False)


def test_an_untested_dtype_is_refused_naming_the_kernel():
    with pytest.raises(KernelNotSupported, match="'rms_norm' is tested in float32 and bfloat16 only, not float16"):
        resolve_kernels(["rms_norm"], platform="inf2", dtype="float16", block_layout=False)


def test_a_platform_other_than_inf2_or_trn1_is_refused():
    with pytest.raises(KernelNotSupported, match="platform 'trn2'"):
        resolve_kernels(True, platform="trn2", dtype="bfloat16", block_layout=True)


def test_an_nki_0_3_kernel_does_not_run_on_inf2_or_trn1(monkeypatch):
    monkeypatch.setitem(kernel_support.KERNELS, "rms_norm", KernelInfo("rms_norm", language="nki-0.3"))
    with pytest.raises(KernelNotSupported, match="'rms_norm' is written for nki-0.3; NKI 0.3 kernels do not run"):
        resolve_kernels(True, platform="trn1", dtype="bfloat16", block_layout=False)


def test_the_error_is_a_value_error():
    assert issubclass(KernelNotSupported, ValueError)


def test_platform_of_instance_types():
    assert platform_of("inf2.48xlarge") == "inf2"
    assert platform_of("trn1.2xlarge") == platform_of("trn1n.32xlarge") == "trn1"
    with pytest.raises(KernelNotSupported, match="'trn2.48xlarge' is not Inf2 or Trn1"):
        platform_of("trn2.48xlarge")
