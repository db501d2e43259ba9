#!/usr/bin/env bash
# Every boot (idempotent; appliance-firstboot.service): generate secrets once, make sure the Neuron driver is built
# and loaded for the RUNNING kernel, migrate, record this node's instance type and NeuronCores, create the console
# admin once. A missing driver or neuron-ls failure does not stop the appliance: register_node records it and the
# console's Nodes page shows it.
set -euo pipefail
ENV=/etc/appliance/appliance.env
SECRETS=/etc/appliance/secrets.env
PY=/opt/appliance/.venv/bin/python
TOOLS_PATH=/opt/aws/neuron/bin:/opt/appliance/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

ensure_neuron_driver() {
  # The AMI built the DKMS module for the kernel it was built on; a kernel updated since has none until DKMS builds it.
  local kernel
  kernel=$(uname -r)
  if ! modinfo neuron >/dev/null 2>&1 && ! [ -n "$(find "/lib/modules/$kernel" -name 'neuron.ko*' -print -quit 2>/dev/null)" ]; then
    echo "firstboot: no neuron module for kernel $kernel; building it with DKMS"
    if [ ! -e "/lib/modules/$kernel/build" ]; then
      timeout 300 apt-get install -y "linux-headers-$kernel" || echo "firstboot: could not install linux-headers-$kernel" >&2
    fi
    timeout 900 dkms autoinstall -k "$kernel" || echo "firstboot: dkms autoinstall -k $kernel failed" >&2
  fi
  if ! [ -d /sys/module/neuron ]; then
    modprobe neuron || echo "firstboot: modprobe neuron failed (see dmesg)" >&2
  fi
}

# The installation's secrets (appliance/secret_store.py reads the same file: APPLIANCE_SECRETS_FILE in appliance.env).
# A value missing from an older file is added; none is ever replaced.
umask 077
touch "$SECRETS"
for name in SECRET_KEY API_KEY_HMAC_SECRET APPLIANCE_METRICS_TOKEN; do
  grep -q "^$name=" "$SECRETS" || echo "$name=$(openssl rand -hex 32)" >> "$SECRETS"
done
chgrp appliance "$SECRETS"; chmod 0640 "$SECRETS"
# The /metrics scrape token alone, for Prometheus' `authorization: { credentials_file: ... }` (docs/metrics.md).
sed -n 's/^APPLIANCE_METRICS_TOKEN=//p' "$SECRETS" > /etc/appliance/metrics-token
chgrp appliance /etc/appliance/metrics-token; chmod 0640 /etc/appliance/metrics-token
umask 022  # what follows (static files nginx serves, as www-data) is not secret
set -a; source "$ENV"; source "$SECRETS"; set +a
ensure_neuron_driver
cd /opt/appliance
sudo -E -u appliance $PY manage.py migrate --noinput
sudo -E -u appliance $PY manage.py collectstatic --noinput
chmod -R a+rX /var/lib/appliance/static  # also heals folders an earlier boot made under umask 077
# Instance type (IMDSv2), driver state, neuron-ls chips/cores -> this node's row (problems recorded, not fatal).
sudo -E -u appliance env PATH="$TOOLS_PATH" $PY manage.py register_node --device neuron || \
  echo "firstboot: register_node failed; the node agent registers the node when it starts" >&2
if [ ! -f /root/appliance-admin.txt ]; then
  PASSWORD=$(openssl rand -base64 18)
  sudo -E -u appliance $PY manage.py create_admin admin --password "$PASSWORD"
  umask 077; echo "console user: admin  password: $PASSWORD" > /root/appliance-admin.txt
fi
