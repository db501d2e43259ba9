import pytest

from appliance.runtime.neuron.cores import VISIBLE_CORES, check_visible_cores, parse_cores, visible_cores_env


def test_visible_cores_env_is_a_range_of_the_replica_cores():
    assert visible_cores_env([2, 3]) == {VISIBLE_CORES: "2-3"}
    assert visible_cores_env([5]) == {VISIBLE_CORES: "5"}
    assert visible_cores_env([11, 8, 9, 10], tp_degree=4, total_cores=12) == {VISIBLE_CORES: "8-11"}


@pytest.mark.parametrize(
    "cores, kwargs, match",
    [
        ([], {}, "at least one NeuronCore"),
        ([0, 2], {}, "not contiguous"),
        ([1, 1], {}, "lists a core twice"),
        ([-1], {}, "non-negative"),
        ([0, 1], {"tp_degree": 4}, "compiled for tp_degree=4 but the replica has 2 cores"),
        ([1, 2], {"total_cores": 2}, "core 2 does not exist on a node with 2 NeuronCores"),
    ],
)
def test_bad_core_assignments_are_rejected(cores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        visible_cores_env(cores, **kwargs)


def test_parse_and_check_visible_cores():
    assert parse_cores("0-3") == [0, 1, 2, 3] and parse_cores("4") == [4] and parse_cores("0,1") == [0, 1]
    with pytest.raises(ValueError, match="not a core index or range"):
        parse_cores("a-b")
    assert check_visible_cores(2, {VISIBLE_CORES: "6-7"}) == [6, 7]
    with pytest.raises(ValueError, match="tp_degree=2 but the replica has 1 cores"):
        check_visible_cores(2, {VISIBLE_CORES: "6"})
    with pytest.raises(RuntimeError, match="NEURON_RT_VISIBLE_CORES is not set"):
        check_visible_cores(2, {})
