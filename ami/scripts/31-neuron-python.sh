#!/usr/bin/env bash
# The Neuron SDK 2.28.1 Python packages (pinned in neuron-versions.env; NxD Inference is the only Neuron backend) from
# pip.repos.neuron.amazonaws.com, under the static PyPI pins in neuron-pypi-constraints.txt (torch 2.9,
# transformers 4.57.*); then pip freeze of that environment into /opt/appliance/constraints-neuron.txt
# (neuron-constraints.sh), which 32-appliance-requirements.sh installs the appliance under.
# make ami-test replaces this script by ami/test/standins/31-neuron-python.sh (no Neuron pip index there).
set -euxo pipefail
source /tmp/ami/neuron-versions.env
PY=/opt/appliance/.venv/bin/python
$PY -m pip install --extra-index-url https://pip.repos.neuron.amazonaws.com -c /tmp/ami/neuron-pypi-constraints.txt \
  "neuronx-cc==${NEURONX_CC_VERSION}" \
  "torch-neuronx==${TORCH_NEURONX_VERSION}" \
  "neuronx-distributed==${NEURONX_DISTRIBUTED_VERSION}" \
  "neuronx-distributed-inference==${NEURONX_DISTRIBUTED_INFERENCE_VERSION}"
$PY - <<'PYCHECK'
import torch, transformers
assert transformers.__version__.startswith("4.57."), f"transformers {transformers.__version__}: NxD Inference 0.8 needs 4.57.*"
assert torch.__version__.startswith("2.9."), f"torch {torch.__version__}: torch-neuronx 2.9 needs torch 2.9"
import neuronx_distributed_inference.utils.hf_adapter  # noqa: F401  the module transformers 5 broke
print(f"Neuron set OK: torch {torch.__version__}, transformers {transformers.__version__}")
PYCHECK
NEURON_SDK_VERSION=$NEURON_SDK_VERSION bash /tmp/ami/scripts/neuron-constraints.sh "$PY" > /opt/appliance/constraints-neuron.txt
