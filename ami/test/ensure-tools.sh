#!/usr/bin/env bash
# Debian's packages make ami-test runs with: mmdebstrap (the fresh root), packer (packer validate), systemd-container
# (systemd-nspawn boots the root), slirp4netns (the provisioning's network namespace reaches the mirrors).
# nginx -t and systemd-analyze verify run inside the provisioned root, with its own Debian nginx and systemd.
set -euo pipefail
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v packer >/dev/null || missing+=(packer)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
command -v git >/dev/null || missing+=(git)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "make ami-test needs root and these Debian packages: ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
