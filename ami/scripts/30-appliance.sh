#!/usr/bin/env bash
# The appliance in /opt/appliance with its own virtualenv and ONE dependency set:
#   1. the Neuron SDK 2.28.1 Python packages (pinned in neuron-versions.env; NxD Inference is the only Neuron backend),
#      under the static PyPI pins in neuron-pypi-constraints.txt (torch 2.9, transformers 4.57.*);
#   2. pip freeze of that environment into /opt/appliance/constraints-neuron.txt (scripts/neuron-constraints.sh);
#   3. the appliance's requirements.txt (ranges) with -c constraints-neuron.txt, so nothing step 1 installed is
#      upgraded (requirements.txt alone would take transformers 5, which NxD Inference 0.8 does not run under).
set -euxo pipefail
source /tmp/ami/neuron-versions.env
id appliance >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/appliance --shell /usr/sbin/nologin appliance
usermod -aG neuron appliance 2>/dev/null || true
mkdir -p /opt/appliance /var/lib/appliance /etc/appliance
tar -xzf /tmp/appliance.tar.gz -C /opt/appliance
python3.11 -m venv /opt/appliance/.venv
PY=/opt/appliance/.venv/bin/python
PIP="$PY -m pip"
$PIP install --upgrade pip
$PIP install --extra-index-url https://pip.repos.neuron.amazonaws.com -c /tmp/ami/neuron-pypi-constraints.txt \
  "neuronx-cc==${NEURONX_CC_VERSION}" \
  "torch-neuronx==${TORCH_NEURONX_VERSION}" \
  "neuronx-distributed==${NEURONX_DISTRIBUTED_VERSION}" \
  "neuronx-distributed-inference==${NEURONX_DISTRIBUTED_INFERENCE_VERSION}"
NEURON_SDK_VERSION=$NEURON_SDK_VERSION bash /tmp/ami/scripts/neuron-constraints.sh "$PY" > /opt/appliance/constraints-neuron.txt
$PIP install -c /opt/appliance/constraints-neuron.txt -r /opt/appliance/requirements.txt
# Nothing the Neuron packages pinned moved, and the set is consistent.
$PIP check
$PY - <<'PYCHECK'
import torch, transformers
assert transformers.__version__.startswith("4.57."), f"transformers {transformers.__version__}: NxD Inference 0.8 needs 4.57.*"
assert torch.__version__.startswith("2.9."), f"torch {torch.__version__}: torch-neuronx 2.9 needs torch 2.9"
import neuronx_distributed_inference.utils.hf_adapter  # noqa: F401  the module transformers 5 broke
print(f"Neuron set OK: torch {torch.__version__}, transformers {transformers.__version__}")
PYCHECK
chown -R appliance:appliance /var/lib/appliance
install -m 0640 -o root -g appliance /tmp/ami/appliance.env /etc/appliance/appliance.env
