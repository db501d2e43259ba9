#!/usr/bin/env bash
# STAND-IN (make ami-test) for ami/scripts/31-neuron-python.sh, which needs the Neuron pip index
# (pip.repos.neuron.amazonaws.com). It installs NO Neuron package: it checks that the real script asks for the four
# packages at the versions neuron-versions.env pins, under neuron-pypi-constraints.txt; then installs what is on PyPI
# of what they would bring: transformers under the static pins, and torch from /tmp/ami-test-wheels (the machine's
# CPU wheel, torch 2.13.0+cpu, NOT the torch 2.9 that torch-neuronx brings: the torch pins are left out); and freezes
# that with the real neuron-constraints.sh into /opt/appliance/constraints-neuron.txt, as the real script does.
set -euo pipefail
AMI=${AMI_DIR:-/tmp/ami}  # tests/ami run the checks against a copy
echo "STAND-IN for 31-neuron-python.sh: the Neuron pip index is not reachable here;" \
  "checking pins, installing no Neuron package"
source "$AMI"/neuron-versions.env
REAL="$AMI"/scripts/31-neuron-python.sh
PY=/opt/appliance/.venv/bin/python
fail() { echo "STAND-IN 31-neuron-python.sh: $*" >&2; exit 1; }
grep -q -- '--extra-index-url https://pip.repos.neuron.amazonaws.com -c /tmp/ami/neuron-pypi-constraints.txt' "$REAL" \
  || fail "the real script does not install from the Neuron pip index under neuron-pypi-constraints.txt"
for pair in neuronx-cc:NEURONX_CC_VERSION torch-neuronx:TORCH_NEURONX_VERSION \
            neuronx-distributed:NEURONX_DISTRIBUTED_VERSION \
            neuronx-distributed-inference:NEURONX_DISTRIBUTED_INFERENCE_VERSION; do
  package=${pair%%:*}; var=${pair#*:}; version=${!var:-}
  [[ $version =~ ^[0-9]+(\.[0-9]+){1,6}$ ]] || fail "$var='$version' in neuron-versions.env is not a version"
  grep -q "\"${package}==\${${var}}\"" "$REAL" || fail "the real script does not install ${package}==\${${var}}"
  echo "  pinned: ${package}==${version}"
done
grep -qx 'torch==2.9.\*' "$AMI"/neuron-pypi-constraints.txt || fail "neuron-pypi-constraints.txt does not pin torch 2.9.*"
grep -qx 'transformers==4.57.\*' "$AMI"/neuron-pypi-constraints.txt || fail "neuron-pypi-constraints.txt does not pin transformers 4.57.*"
[ "${STANDIN_CHECK_ONLY:-0}" = 1 ] && { echo "STAND-IN 31-neuron-python.sh: pins checked (check only)"; exit 0; }
set -x
grep -v -E '^(torch|torchvision|torch-xla)==' "$AMI"/neuron-pypi-constraints.txt > /tmp/ami-test-pypi-pins.txt
$PY -m pip install /tmp/ami-test-wheels/torch-*.whl
$PY -m pip install -c /tmp/ami-test-pypi-pins.txt transformers
$PY -c "import transformers as t; assert t.__version__.startswith('4.57.'), t.__version__"
NEURON_SDK_VERSION=$NEURON_SDK_VERSION bash "$AMI"/scripts/neuron-constraints.sh "$PY" > /opt/appliance/constraints-neuron.txt
set +x
if grep -i -E '^(neuronx|torch-neuronx|libneuronxla)' /opt/appliance/constraints-neuron.txt; then
  fail "a Neuron package is installed, yet this stand-in installs none"
fi
echo "STAND-IN 31-neuron-python.sh: done (torch $($PY -c 'import torch; print(torch.__version__)') from the machine's CPU wheel, no Neuron packages)"
