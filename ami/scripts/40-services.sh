#!/usr/bin/env bash
# PostgreSQL role and database, systemd units, nginx site. Secrets are generated on first boot, not baked in.
set -euxo pipefail
sudo -u postgres psql -tc "SELECT 1 FROM pg_roles WHERE rolname='appliance'" | grep -q 1 || \
  sudo -u postgres psql -c "CREATE ROLE appliance LOGIN"
sudo -u postgres psql -tc "SELECT 1 FROM pg_database WHERE datname='appliance'" | grep -q 1 || \
  sudo -u postgres createdb -O appliance appliance
install -m 0644 /tmp/ami/systemd/*.service /tmp/ami/systemd/*.target /etc/systemd/system/
install -m 0755 /tmp/ami/scripts/firstboot.sh /opt/appliance/firstboot.sh
install -m 0644 /tmp/ami/nginx/appliance.conf /etc/nginx/sites-available/appliance.conf
ln -sf /etc/nginx/sites-available/appliance.conf /etc/nginx/sites-enabled/appliance.conf
rm -f /etc/nginx/sites-enabled/default
nginx -t
systemctl daemon-reload
systemctl enable appliance-firstboot.service appliance.target
