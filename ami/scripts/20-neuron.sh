#!/usr/bin/env bash
# Neuron driver, runtime and tools (apt), pinned to the SDK release in neuron-versions.env.
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
source /tmp/ami/neuron-versions.env
. /etc/os-release
curl -fsSL https://apt.repos.neuron.amazonaws.com/GPG-PUB-KEY-AMAZON-AWS-NEURON.PUB | gpg --dearmor -o /usr/share/keyrings/neuron.gpg
echo "deb [signed-by=/usr/share/keyrings/neuron.gpg] https://apt.repos.neuron.amazonaws.com ${VERSION_CODENAME} main" \
  > /etc/apt/sources.list.d/neuron.list
apt-get update
# Headers for the running kernel AND the headers meta-package of its flavour (linux-headers-aws on EC2's Ubuntu
# kernels), so a kernel update also brings its headers and DKMS can build the driver for it. First boot
# (firstboot.sh) builds it for the running kernel if it is still missing.
KERNEL_FLAVOUR=$(uname -r | sed -E 's/^[0-9.]+-[0-9]+-//')
apt-get install -y dkms "linux-headers-$(uname -r)" "linux-headers-${KERNEL_FLAVOUR:-aws}" git
apt-get install -y \
  "aws-neuronx-dkms=${NEURON_DKMS_VERSION}*" \
  "aws-neuronx-runtime-lib=${NEURON_RUNTIME_LIB_VERSION}*" \
  "aws-neuronx-collectives=${NEURON_COLLECTIVES_VERSION}*" \
  "aws-neuronx-tools=${NEURON_TOOLS_VERSION}*"
apt-mark hold aws-neuronx-dkms aws-neuronx-runtime-lib aws-neuronx-collectives aws-neuronx-tools
dkms status
modinfo neuron
echo 'export PATH=/opt/aws/neuron/bin:$PATH' > /etc/profile.d/neuron.sh
