#!/usr/bin/env bash
# First boot: generate secrets, migrate, record this node's inventory, create the console admin.
set -euo pipefail
ENV=/etc/appliance/appliance.env
SECRETS=/etc/appliance/secrets.env
if [ ! -f "$SECRETS" ]; then
  umask 077
  {
    echo "SECRET_KEY=$(openssl rand -hex 32)"
    echo "API_KEY_HMAC_SECRET=$(openssl rand -hex 32)"
  } > "$SECRETS"
  chgrp appliance "$SECRETS"; chmod 0640 "$SECRETS"
fi
set -a; source "$ENV"; source "$SECRETS"; set +a
cd /opt/appliance
PY=/opt/appliance/.venv/bin/python
sudo -E -u appliance $PY manage.py migrate --noinput
sudo -E -u appliance $PY manage.py collectstatic --noinput
if [ ! -f /root/appliance-admin.txt ]; then
  PASSWORD=$(openssl rand -base64 18)
  sudo -E -u appliance $PY manage.py create_admin admin --password "$PASSWORD"
  umask 077; echo "console user: admin  password: $PASSWORD" > /root/appliance-admin.txt
fi
