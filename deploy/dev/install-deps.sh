#!/usr/bin/env bash
# install-deps.sh -- the Debian packages ESS builds, tests and runs with.
# Installs only what is missing (apt-get, as root); quiet when all are present.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config
  librabbitmq-dev libcurl4-openssl-dev libjansson-dev libpq-dev libyaml-dev libssl-dev
  libmicrohttpd-dev libcmocka-dev
  rabbitmq-server postgresql-15 postgresql-client-15
  python3 python3-pika python3-psycopg2 python3-requests python3-yaml
  docker-compose valgrind vsftpd openssl openssh-server clang
  clang-format clang-tidy cppcheck
  chromium
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node.js with npm (the Playwright and Standard Webhooks checks): any install
# will do. A NodeSource nodejs bundles npm and conflicts with Debian's npm
# package, so look for the commands, and ask apt only when they are absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps.sh: missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2 || true
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
# Debian's rabbitmq-server, postgresql and openssh-server may start system services on install
# where an init system runs; ESS never uses them (tests start private ones; ess-it-sftp
# runs its own sshd unprivileged on a loopback port).
