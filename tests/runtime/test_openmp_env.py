"""APPLIANCE_OMP_WAIT: the OpenMP wait setting chosen before torch loads (appliance/runtime/openmp_env.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.runtime import openmp_env


def test_passive_is_the_default_and_spin_is_a_bounded_spin():
    env: dict[str, str] = {}
    assert openmp_env.apply(env) == "passive"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {openmp_env.ENV: "spin"}
    assert openmp_env.apply(env) == "spin"
    assert env["GOMP_SPINCOUNT"] == openmp_env.SPIN_COUNT and "OMP_WAIT_POLICY" not in env


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "5"}])
def test_openmp_variables_the_user_set_win(user):
    env = {openmp_env.ENV: "spin", **user}
    assert openmp_env.apply(env) == "environment"
    assert env == {openmp_env.ENV: "spin", **user}


def test_an_unknown_choice_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="APPLIANCE_OMP_WAIT must be one of passive, spin; got 'busy'"):
        openmp_env.apply({openmp_env.ENV: "busy"})


def test_a_benchmark_child_gets_its_choice_not_the_parents_default():
    """bench.py applies the passive default to its own process before it hands over to the peer bench; the engines
    that bench starts must still run with the setting it asks for."""
    code = (
        "import os; from appliance.runtime import openmp_env; openmp_env.apply(); "
        "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'; "
        "child = openmp_env.child_environ('spin'); "
        "print(child.get('OMP_WAIT_POLICY'), child.get('GOMP_SPINCOUNT'), child.get('APPLIANCE_OMP_WAIT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", openmp_env.ENV)}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["None", openmp_env.SPIN_COUNT, "spin"]
    env[openmp_env.ENV] = "passive"  # the benchmark's --omp-wait wins over the shell's choice for replicas
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["None", openmp_env.SPIN_COUNT, "spin"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting reaches the child untouched
    out = subprocess.run([sys.executable, "-c", code.replace("assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'; ",
                                                             "")],
                         env=env, cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ACTIVE", "None", "spin"]
