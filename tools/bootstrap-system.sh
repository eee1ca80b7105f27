#!/usr/bin/env bash
# Make sure the system packages that a target needs are there.
# As root it installs what is missing with apt-get; otherwise it prints the
# exact command to run and fails.
#   tools/bootstrap-system.sh demo   python3 with venv
#   tools/bootstrap-system.sh test   + node/npm (MicroPython interpreter), mosquitto,
#                                    chromium (browser tests), a Chinese font
set -euo pipefail
target=${1:-test}

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "$target" = test ]; then
  have_cmd node || need+=(nodejs)
  have_cmd npm || need+=(npm)
  have_cmd mosquitto || need+=(mosquitto)
  have_cmd chromium || need+=(chromium)
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
fi

[ ${#need[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y ${need[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "bootstrap: missing system packages: ${need[*]}" >&2
  echo "bootstrap: run this as root, then run make again:" >&2
  echo "    sudo sh -c '$cmd'" >&2
  exit 1
fi
