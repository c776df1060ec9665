#!/usr/bin/env bash
# Installs the real peers the tests and benches compare talonflow with, from Debian's packages:
# Prometheus 2.42 and promtool, Alertmanager and amtool, kcat, and Chromium with its driver for the
# console's browser tests. Idempotent: packages already there cost one dpkg query.
set -euo pipefail

packages=(prometheus prometheus-alertmanager kcat chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && { echo "peers: ${packages[*]} already installed"; exit 0; }

command -v apt-get >/dev/null || { echo "install-peers.sh: apt-get is required to install ${missing[*]}" >&2; exit 1; }
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
echo "peers: installing ${missing[*]} from Debian's packages"
$sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start their own services; the tests run their own instances on their own ports.
for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
  { $sudo_ systemctl stop "$service" && $sudo_ systemctl disable "$service"; } >/dev/null 2>&1 || true
  pkill -x "${service#prometheus-}" >/dev/null 2>&1 || true
done
echo "peers: installed ${missing[*]}"
