#!/usr/bin/env bash
# The appliance's user, folders and code in /opt/appliance, and its own virtualenv (empty until 31 and 32 fill it).
set -euxo pipefail
id appliance >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/appliance --shell /usr/sbin/nologin appliance
usermod -aG neuron appliance 2>/dev/null || true
mkdir -p /opt/appliance /var/lib/appliance /etc/appliance
chmod 0751 /var/lib/appliance  # Ubuntu's useradd makes homes 0750: nginx (www-data) must reach static/ in it
tar -xzf /tmp/appliance.tar.gz -C /opt/appliance
python3.11 -m venv /opt/appliance/.venv
/opt/appliance/.venv/bin/python -m pip install --upgrade pip
