#!/usr/bin/env bash
# Installs the Debian packages lantaarn runs on, when their programs are missing.
# Usage: scripts/system-deps.sh PACKAGE...
# (known: mosquitto influxdb chromium mosquitto-clients python3-venv prometheus
#  prometheus-alertmanager, and for the broker plugin mosquitto-dev libmosquitto-dev libssl-dev gcc
#  make)
set -euo pipefail

program_of() {
  case "$1" in
    mosquitto) echo /usr/sbin/mosquitto ;;
    influxdb) echo /usr/bin/influxd ;;
    chromium) echo /usr/bin/chromium ;;
    mosquitto-clients) echo /usr/bin/mosquitto_pub ;;
    python3-venv) echo python3-venv ;;
    mosquitto-dev) echo /usr/include/mosquitto_plugin.h ;;
    libmosquitto-dev) echo /usr/include/mosquitto.h ;;
    libssl-dev) echo /usr/include/openssl/evp.h ;;
    gcc) echo /usr/bin/gcc ;;
    make) echo /usr/bin/make ;;
    prometheus) echo /usr/bin/promtool ;;
    prometheus-alertmanager) echo /usr/bin/prometheus-alertmanager ;;
    *) echo "unknown package $1" >&2; exit 2 ;;
  esac
}

missing=()
for package in "$@"; do
  program=$(program_of "$package")
  if [ "$package" = python3-venv ]; then
    # Debian's python3 makes virtual environments only with python3-venv (ensurepip).
    "${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null || missing+=("$package")
  elif [[ "$program" == /usr/include/* ]]; then
    [ -f "$program" ] || missing+=("$package")  # headers: present or not
  elif [ ! -x "$program" ] && ! command -v "$(basename "$program")" >/dev/null 2>&1; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "lantaarn needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
