#!/usr/bin/env bash
# The appliance in /opt/appliance with its own virtualenv: the Neuron Python packages, then the project's.
set -euxo pipefail
source /tmp/ami/neuron-versions.env
id appliance >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/appliance --shell /usr/sbin/nologin appliance
usermod -aG neuron appliance 2>/dev/null || true
mkdir -p /opt/appliance /var/lib/appliance /etc/appliance
tar -xzf /tmp/appliance.tar.gz -C /opt/appliance
python3.11 -m venv /opt/appliance/.venv
PIP=/opt/appliance/.venv/bin/pip
$PIP install --upgrade pip
$PIP install --extra-index-url https://pip.repos.neuron.amazonaws.com \
  "neuronx-cc==${NEURONX_CC_VERSION}" ${TORCH_NEURONX_SPEC} \
  "neuronx-distributed==${NEURONX_DISTRIBUTED_VERSION}" \
  "neuronx-distributed-inference==${NEURONX_DISTRIBUTED_INFERENCE_VERSION}"
# torch comes with torch-neuronx on the AMI; the CPU pin in requirements.txt is for development machines.
grep -v '^torch==' /opt/appliance/requirements.txt > /tmp/requirements-ami.txt
$PIP install -r /tmp/requirements-ami.txt
chown -R appliance:appliance /var/lib/appliance
install -m 0640 -o root -g appliance /tmp/ami/appliance.env /etc/appliance/appliance.env
