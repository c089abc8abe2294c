#!/usr/bin/env bash
# System packages the tests, the demo and the benchmark need (Debian 12 / Ubuntu, as root).
# Installs only what is missing, so a second run is quick. On RHEL-family servers in production
# you need only the dump tools you use (mariadb, postgresql, zstd, acl, attr) and your engine.
set -euo pipefail

packages=(
  mariadb-server mariadb-client     # throwaway MariaDB servers, mariadb-dump
  postgresql postgresql-client      # throwaway PostgreSQL servers, pg_dump, pg_restore
  zstd gzip                         # dump compression
  acl attr                          # getfacl/setfacl, getfattr/setfattr (Fortification ACLs)
  duplicity restic borgbackup       # engines
  bacula-director-sqlite3 bacula-director bacula-sd bacula-fd bacula-console sqlite3
  debianutils                       # run-parts (cron.daily tests)
  procps                            # ps/pkill used by fault tests
  iproute2                          # ip netns + veth: the fleet test's network namespaces
  mydumper sysbench                 # bench:dumps compares with mydumper/myloader, measures site latency
  rsync tar perl                    # the rsync custom method and the dumps hand-off (hooks/), the add-in fixture's generator; restore site/files
  util-linux                        # unshare/nsenter/mount: restore tests mount a real overlay; the fleet test's mount namespaces
  gcc libc6-dev passwd              # the restore attack test compiles its renameat2 racer; useradd for test tenants and verify's OS user
  openssh-server openssh-client     # offsite tests: the backup host's sshd (forced borg serve --append-only), the client's ssh
  rclone curl openssl               # offsite tests: rclone serve restic --append-only over TLS, raw REST requests, the test CA
  nftables                          # offsite fault tests: packet loss on the link (the kernel may lack sch_netem)
  tmux                              # cli-progress tests: the progress display rendered in a real terminal (capture-pane)
)
# tc (iproute2) shapes the offsite tests' link with tbf; netem (loss/delay) needs the sch_netem kernel module,
# which the development kernel lacks: loss is nftables (numgen random … drop), delay a relay in the namespace.

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start the distribution's own daemons: tests start their own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q
  # With recommends: the combination the tests were developed against (duplicity pulls gpg helpers).
  apt-get install -y -q "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
