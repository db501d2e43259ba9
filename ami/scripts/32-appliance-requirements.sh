#!/usr/bin/env bash
# The appliance's requirements.txt (ranges) with -c constraints-neuron.txt, so nothing 31-neuron-python.sh installed
# is upgraded (requirements.txt alone would take transformers 5, which NxD Inference 0.8 does not run under); then
# check that the set is consistent and that every frozen pin still holds.
set -euxo pipefail
PY=/opt/appliance/.venv/bin/python
$PY -m pip install -c /opt/appliance/constraints-neuron.txt -r /opt/appliance/requirements.txt
$PY -m pip check
$PY - /opt/appliance/constraints-neuron.txt <<'PYCHECK'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement  # a dependency of transformers
pins = [Requirement(l) for l in open(sys.argv[1]).read().splitlines() if l and not l.startswith("#")]
moved = [f"{r.name} {version(r.name)} (frozen {r.specifier})" for r in pins if not r.specifier.contains(version(r.name), prereleases=True)]
assert not moved, "the appliance's requirements moved packages the Neuron step installed: " + ", ".join(moved)
import torch, transformers
print(f"{len(pins)} frozen pins hold: torch {torch.__version__}, transformers {transformers.__version__}")
PYCHECK
chown -R appliance:appliance /var/lib/appliance
install -m 0640 -o root -g appliance /tmp/ami/appliance.env /etc/appliance/appliance.env
