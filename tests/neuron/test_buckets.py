import pytest

from appliance.runtime.neuron.buckets import (
    BucketOverflow,
    BucketSet,
    choose_bucket,
    pad_rows,
    power_of_two_buckets,
)


def test_power_of_two_buckets_end_at_the_maximum():
    assert power_of_two_buckets(8) == (1, 2, 4, 8)
    assert power_of_two_buckets(100, 16) == (16, 32, 64, 100)
    assert power_of_two_buckets(128, 128) == (128,)
    assert power_of_two_buckets(1) == (1,)


def test_choose_bucket_picks_the_smallest_that_fits():
    buckets = (16, 32, 64)
    assert [choose_bucket(buckets, n) for n in (1, 16, 17, 32, 33, 64)] == [16, 16, 32, 32, 64, 64]


def test_choose_bucket_rejects_what_no_bucket_holds():
    with pytest.raises(BucketOverflow, match="prompt length 65 exceeds the largest compiled bucket 64"):
        choose_bucket((16, 32, 64), 65, "prompt length")


def test_pad_rows_pads_length_and_batch_and_unpad_restores():
    rows = [[5, 6, 7], [8]]
    padded = pad_rows(rows, batch=4, length=4, pad=0)
    assert padded == [[5, 6, 7, 0], [8, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    bs = BucketSet.build([1, 2, 4], [4, 8], [8, 16])
    shape = bs.prefill([3, 1])
    assert (shape.batch, shape.length) == (2, 4)
    assert shape.unpad_rows(padded) == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert shape.last_positions() == [2, 0]


def test_bucket_set_decode_shape_uses_the_context_length():
    bs = BucketSet.build([1, 2, 4, 8], [16, 32], [32, 64, 128])
    shape = bs.decode(3, max_context_len=40)
    assert (shape.batch, shape.length, shape.rows) == (4, 64, 3)
    with pytest.raises(BucketOverflow, match="batch size 9"):
        bs.decode(9, 10)


def test_bucket_set_rejects_bad_buckets():
    with pytest.raises(ValueError, match="batch_sizes must be positive integers"):
        BucketSet.build([0, 2], [8], [8])
    with pytest.raises(ValueError, match="context_buckets must list at least one bucket"):
        BucketSet.build([1], [], [8])
