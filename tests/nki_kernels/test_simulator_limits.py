"""The NumPy simulator refuses what a NeuronCore-v2 cannot do, with an error that names the limit."""
import numpy as np
import pytest

from nki_kernels.simulator import (
    MatmulTileLimitError,
    PartitionLimitError,
    PsumOverflowError,
    SbufOverflowError,
    nki,
)
from nki_kernels.simulator import (
    isa as nisa,
)
from nki_kernels.simulator import (
    language as nl,
)

pytestmark = pytest.mark.simulator


def run(body, *arrays):
    @nki.jit
    def kernel(*args):
        return body(*args)

    return nki.simulate_kernel(kernel, *arrays)


def test_load_over_128_partitions_is_rejected():
    x = np.zeros((129, 8), dtype=np.float32)
    with pytest.raises(PartitionLimitError, match=r"partition dimension 129 exceeds the 128-partition limit"):
        run(lambda t: nl.load(t), x)


def test_allocating_a_256_partition_tile_is_rejected():
    with pytest.raises(PartitionLimitError, match="pmax"):
        run(lambda: nl.zeros((256, 4), dtype=nl.float32))


def test_matmul_stationary_over_128x128_is_rejected():
    def body():
        stationary = nl.zeros((128, 256), dtype=nl.float32)
        moving = nl.zeros((128, 64), dtype=nl.float32)
        return nisa.nc_matmul(stationary, moving)

    expected = r"stationary tile \[128, 256\] exceeds the 128x128 stationary limit"
    with pytest.raises(MatmulTileLimitError, match=expected):
        run(body)


def test_matmul_moving_over_128x512_is_rejected():
    def body():
        return nisa.nc_matmul(nl.zeros((128, 128), dtype=nl.float32), nl.zeros((128, 1024), dtype=nl.float32))

    with pytest.raises(MatmulTileLimitError, match=r"moving tile \[128, 1024\] exceeds the 128x512 moving limit"):
        run(body)


def test_matmul_at_the_limits_is_accepted_and_exact():
    a = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((128, 512)).astype(np.float32)

    def body(a_t, b_t):
        out = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.shared_hbm)
        nl.store(out, value=nl.copy(nisa.nc_matmul(nl.load(a_t), nl.load(b_t))))
        return out

    np.testing.assert_allclose(run(body, a, b), a.T @ b, rtol=1e-5, atol=1e-4)


def test_live_tiles_past_192_kib_per_partition_overflow_sbuf():
    def body():
        held = [nl.zeros((128, 16 * 1024), dtype=nl.float32) for _ in range(3)]  # 3 x 64 KiB = 192 KiB: fits
        held.append(nl.zeros((128, 1), dtype=nl.float32))  # one more float32 does not
        return held

    with pytest.raises(SbufOverflowError, match=r"SBUF overflow: .* 196608 bytes \(192 KiB\) per partition"):
        run(body)


def test_a_single_tile_over_192_kib_per_partition_overflows_sbuf():
    with pytest.raises(SbufOverflowError, match="192 KiB"):
        run(lambda: nl.zeros((1, 50_000), dtype=nl.float32))


def test_released_tiles_give_their_sbuf_back():
    def body():
        out = nl.ndarray((128, 1), dtype=nl.float32, buffer=nl.shared_hbm)
        for _ in range(10):  # each iteration's 64 KiB tile replaces the last one: 640 KiB in all, never 192 live
            tile = nl.zeros((128, 16 * 1024), dtype=nl.float32)
        nl.store(out, value=tile[:, 0:1])
        return out

    np.testing.assert_array_equal(run(body), np.zeros((128, 1), dtype=np.float32))
    # the new tile lands before the old one goes, so two are live at the peak
    assert nki.last_memory_report.peak_sbuf_bytes_per_partition == 2 * 64 * 1024


def test_nine_live_psum_banks_overflow_psum():
    def body():
        return [nl.zeros((128, 512), dtype=nl.float32, buffer=nl.psum) for _ in range(9)]

    with pytest.raises(PsumOverflowError, match=r"PSUM overflow: .* 8 banks of 2048 bytes \(16 KiB\) per partition"):
        run(body)


def test_a_psum_tile_over_16_kib_per_partition_overflows_psum():
    with pytest.raises(PsumOverflowError, match="8 banks"):
        run(lambda: nl.zeros((128, 4097), dtype=nl.float32, buffer=nl.psum))


def test_matmul_operands_must_be_in_sbuf():
    def body():
        in_psum = nl.zeros((128, 128), dtype=nl.float32, buffer=nl.psum)
        return nisa.nc_matmul(in_psum, nl.zeros((128, 128), dtype=nl.float32))

    with pytest.raises(ValueError, match="reads its stationary operand from SBUF"):
        run(body)


def test_store_from_psum_is_rejected():
    def body():
        out = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        nl.store(out, value=nl.zeros((4, 4), dtype=nl.float32, buffer=nl.psum))
        return out

    with pytest.raises(ValueError, match="nl.store reads from SBUF"):
        run(body)


def test_tensor_engine_transpose_spreads_nan_like_neuroncore_v2():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    x[1, 2] = np.nan

    def body(x_t):
        out = nl.ndarray((4, 3), dtype=nl.float32, buffer=nl.shared_hbm)
        nl.store(out, value=nl.copy(nisa.nc_transpose(nl.load(x_t))))
        return out

    out = run(body, x)
    assert np.isnan(out[2]).all()
    np.testing.assert_array_equal(np.delete(out, 2, axis=0), np.delete(x.T, 2, axis=0))


def test_reducing_the_partition_axis_is_rejected():
    with pytest.raises(ValueError, match="axis 0 is the partition axis"):
        run(lambda: nl.sum(nl.zeros((8, 8), dtype=nl.float32), axis=[0]))


def test_calling_a_kernel_directly_says_to_simulate():
    @nki.jit
    def kernel(x):
        return x

    with pytest.raises(RuntimeError, match="nki_kernels.simulate"):
        kernel(np.zeros(2))


def test_masked_load_and_store_touch_only_selected_rows():
    x = np.arange(20, dtype=np.float32).reshape(5, 4)

    def body(x_t):
        out = nl.ndarray((5, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        i_p, i_f = nl.arange(8)[:, None], nl.arange(4)[None, :]
        tile = nl.zeros((8, 4), dtype=nl.float32)
        tile[...] = nl.load(x_t[i_p, i_f], mask=(i_p < 5))
        nl.store(out[i_p, i_f], value=nl.multiply(tile, 2.0), mask=(i_p < 5))
        return out

    np.testing.assert_array_equal(run(body, x), 2 * x)


def test_python_control_flow_on_an_affine_loop_index_is_refused():
    def body():
        for t in nl.affine_range(3):
            min(128, 300 - t * 128)  # fine in Python, but NKI traces t symbolically

    with pytest.raises(TypeError, match="symbolic in NKI"):
        run(body)


def test_affine_loop_index_works_in_index_arithmetic():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)

    def body(x_t):
        out = nl.ndarray((3, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        for t in nl.affine_range(3):
            row = nl.load(x_t[t * 1 + nl.arange(1)[:, None], nl.arange(4)[None, :]])
            nl.store(out[t:t + 1, 0:4], value=nl.add(row, 1.0))
        return out

    np.testing.assert_array_equal(run(body, x), x + 1)


def test_matmul_operands_of_different_dtypes_are_rejected():
    def body():
        return nisa.nc_matmul(nl.zeros((8, 8), dtype=nl.bfloat16), nl.zeros((8, 8), dtype=nl.float32))

    with pytest.raises(ValueError, match="share a dtype"):
        run(body)
