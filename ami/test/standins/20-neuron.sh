#!/usr/bin/env bash
# STAND-IN (make ami-test) for ami/scripts/20-neuron.sh, which needs the Neuron apt repository
# (apt.repos.neuron.amazonaws.com) and the running kernel's headers (an EC2 Ubuntu kernel): neither exists in the
# test's Debian root. This stand-in INSTALLS NOTHING: no driver, no runtime, no neuron-ls. It checks that the real
# script asks apt for the four pinned packages at the versions neuron-versions.env pins, and holds them.
set -euo pipefail
AMI=${AMI_DIR:-/tmp/ami}  # tests/ami run the checks against a copy
echo "STAND-IN for 20-neuron.sh: the Neuron apt repository is not reachable here; checking pins, installing nothing"
source "$AMI"/neuron-versions.env
REAL="$AMI"/scripts/20-neuron.sh
fail() { echo "STAND-IN 20-neuron.sh: $*" >&2; exit 1; }
grep -q 'https://apt.repos.neuron.amazonaws.com ' "$REAL" \
  || fail "the real script does not use the Neuron apt repository"
for pair in aws-neuronx-dkms:NEURON_DKMS_VERSION aws-neuronx-runtime-lib:NEURON_RUNTIME_LIB_VERSION \
            aws-neuronx-collectives:NEURON_COLLECTIVES_VERSION aws-neuronx-tools:NEURON_TOOLS_VERSION; do
  package=${pair%%:*}; var=${pair#*:}; version=${!var:-}
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || fail "$var='$version' in neuron-versions.env is not a Neuron apt version"
  grep -q "\"${package}=\${${var}}\*\"" "$REAL" || fail "the real script does not install ${package}=\${${var}}*"
  grep -q "apt-mark hold.*${package}" "$REAL" || fail "the real script does not hold ${package}"
  echo "  pinned: ${package}=${version}*"
done
# The one line of the real script that needs no Neuron repository.
echo 'export PATH=/opt/aws/neuron/bin:$PATH' > "${PROFILE_D:-/etc/profile.d}/neuron.sh"
echo "STAND-IN 20-neuron.sh: done (no Neuron driver, runtime or tools installed; firstboot will record that)"
