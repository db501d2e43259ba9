#!/usr/bin/env bash
# Base OS: Python 3.11, PostgreSQL, Redis, nginx (and sudo, openssl: the later scripts and first boot use them).
# Ubuntu 22.04 (the AMI) takes Python 3.11 from the deadsnakes PPA; Debian 12 (make ami-test's root) has it in main.
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
apt-get update
apt-get install -y ca-certificates curl gnupg jq sudo openssl
if [ "$ID" = ubuntu ]; then
  apt-get install -y software-properties-common
  add-apt-repository -y ppa:deadsnakes/ppa
  apt-get update
fi
apt-get install -y python3.11 python3.11-venv python3.11-dev build-essential \
  postgresql redis-server nginx
systemctl enable postgresql redis-server nginx
