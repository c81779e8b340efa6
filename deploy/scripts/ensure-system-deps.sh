#!/usr/bin/env bash
# Make sure the programs the tests drive are installed: install them with apt when we are
# root, else stop and name what is missing. Under CI=true a missing program fails the run.
set -euo pipefail
declare -A PACKAGE=( [redis-server]=redis-server [nginx]=nginx-light [chromium]=chromium
                     [docker-compose]=docker-compose [node]=nodejs [npm]=npm [initdb]=postgresql )
missing=()
for cmd in "${!PACKAGE[@]}"; do
  if [ "$cmd" = initdb ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=("$cmd")
  else
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=(); for cmd in "${missing[@]}"; do pkgs+=("${PACKAGE[$cmd]}"); done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing missing system packages: ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  exit 0
fi
echo "missing programs the tests need: ${missing[*]} (Debian packages: ${pkgs[*]})" >&2
echo "install them (apt-get install ${pkgs[*]}) and run again" >&2
exit 1
