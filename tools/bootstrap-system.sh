#!/usr/bin/env bash
# Make sure the system packages that a target needs are there.
# As root it installs what is missing with apt-get; otherwise it prints the
# exact command to run and fails.
#   tools/bootstrap-system.sh demo   python3 with venv
#   tools/bootstrap-system.sh test   + node/npm (MicroPython interpreter), mosquitto,
#                                    chromium (browser tests), a Chinese font,
#                                    gcc-multilib where ../shared has the MicroPython
#                                    unix port to build (tests/harness/micropython_unix.py)
set -euo pipefail
target=${1:-test}
root=$(cd "$(dirname "$0")/.." && pwd)

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
# gcc -m32 needs the 32-bit C library headers and gcc's 32-bit start files
have_gcc32() {
  [ -e /usr/include/x86_64-linux-gnu/gnu/stubs-32.h ] &&
    compgen -G '/usr/lib/gcc/x86_64-linux-gnu/*/32/crtbegin.o' >/dev/null
}

python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "$target" = test ]; then
  have_cmd node || need+=(nodejs)
  have_cmd npm || need+=(npm)
  have_cmd mosquitto || need+=(mosquitto)
  have_cmd chromium || need+=(chromium)
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
  # Only where the shared MicroPython unix port is there to build (it is what needs
  # the 32-bit compiler), and only on x86-64, where the build's -m32 needs it.
  if [ -e "$root/../shared/tools/micropython-unix/build.sh" ] && [ "$HOSTTYPE" = x86_64 ]; then
    have_gcc32 || need+=(gcc-multilib)
  fi
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
