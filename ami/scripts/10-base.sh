#!/usr/bin/env bash
# Base OS: Python 3.11, PostgreSQL, Redis, nginx.
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y software-properties-common ca-certificates curl gnupg jq
add-apt-repository -y ppa:deadsnakes/ppa
apt-get update
apt-get install -y python3.11 python3.11-venv python3.11-dev build-essential \
  postgresql redis-server nginx
systemctl enable postgresql redis-server nginx
