#!/usr/bin/env bash
# Boots systemd as PID 1 of new PID, mount, UTS, IPC, network and cgroup
# namespaces, with `make install` (DESTDIR empty, PREFIX=/usr/local) run inside
# them first. Nothing it installs or starts reaches the host:
#   - /etc, /var and /usr/local are overlays whose upper layers live on a tmpfs, so
#     the stemedb user, the units and the data vanish with the namespace;
#   - /run and /tmp are fresh tmpfs mounts, and the network namespace has only its
#     own loopback interface, so ports 18180 and 18181 are private to it;
#   - systemd reads units only from /usr/local/lib/systemd/system (this project's)
#     and from a directory of empty stand-ins for the standard targets plus
#     journald, and runs no generators. Other services installed on the machine
#     (PostgreSQL, nginx, ...) are therefore not even loaded.
#
# Usage: nsboot.sh REPO_ROOT CGROUP_NAME
# Runs in the foreground until that systemd exits. systemd logs to the journal
# inside (journalctl). Stop it with `systemctl --force exit` run inside, or kill
# the namespace's PID 1 with SIGKILL, which ends every process inside.
set -euo pipefail

stage=${STEMEDB_NSBOOT_STAGE:-outside}
root=${1:?usage: nsboot.sh REPO_ROOT CGROUP_NAME}
cgroup_name=${2:?usage: nsboot.sh REPO_ROOT CGROUP_NAME}
state=/run/stemedb-nsboot

# Returns the mount point of the cgroup2 hierarchy (/sys/fs/cgroup on a unified
# host, /sys/fs/cgroup/unified on a hybrid one).
cgroup2_mount() {
  awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts
}

# Moves this shell into a cgroup of its own before the cgroup namespace is
# created, so that systemd treats that cgroup as its root and manages only it.
enter_cgroup() {
  local base
  base=$(cgroup2_mount)
  if [ -z "$base" ]; then
    echo "nsboot: no cgroup2 hierarchy is mounted; systemd needs one" >&2
    exit 1
  fi
  mkdir -p "$base/$cgroup_name"
  echo $$ >"$base/$cgroup_name/cgroup.procs"
}

# Mounts an overlay over DIR whose writes go to the tmpfs at $state.
overlay() {
  local dir=$1 name
  name=$(tr / _ <<<"$dir")
  mkdir -p "$state/upper$name" "$state/work$name"
  mount -t overlay "overlay$name" \
    -o "lowerdir=$dir,upperdir=$state/upper$name,workdir=$state/work$name" "$dir"
}

# Writes an empty target: systemd adds dependencies on these standard targets
# to every unit, and they must exist for a start job to succeed.
stand_in_target() {
  printf '[Unit]\nDescription=Stand-in for %s in the StemeDB test boot\n' "$1" \
    >"$state/units/$1"
}

write_units() {
  local target
  mkdir -p "$state/units" "$state/no-generators"
  for target in sysinit.target basic.target sockets.target timers.target paths.target \
    slices.target local-fs.target network.target shutdown.target umount.target \
    final.target multi-user.target; do
    stand_in_target "$target"
  done
  printf '[Unit]\nDescription=System slice\nDefaultDependencies=no\n' \
    >"$state/units/system.slice"
  # journald takes the daemons' stdout and sd_journal_send() messages, so that the
  # test can show them with journalctl when something fails.
  for unit in systemd-journald.service systemd-journald.socket \
    systemd-journald-dev-log.socket systemd-journald-audit.socket; do
    ln -s "/lib/systemd/system/$unit" "$state/units/$unit"
  done
  cat >"$state/units/stemedb-test.target" <<'EOF'
[Unit]
Description=StemeDB test boot: journald only; the test starts stemedb-node.target
Wants=systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket
EOF
}

if [ "$stage" = outside ]; then
  enter_cgroup
  export STEMEDB_NSBOOT_STAGE=inside
  exec unshare --pid --fork --mount-proc --mount --propagation private --uts --ipc \
    --net --cgroup "$0" "$root" "$cgroup_name"
fi

# Inside: this shell is PID 1 of the new PID namespace until it execs systemd.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p "$state"
overlay /etc
overlay /var
overlay /usr/local
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
write_units

echo "nsboot: make install in $root"
make --no-print-directory -C "$root" install >&2
# Under `make test SANITIZE=...` the installed binaries carry the sanitizers.
# LeakSanitizer needs ptrace, which the units' SystemCallFilter forbids, so its
# leak check is turned off for every service; AddressSanitizer itself stays on.
# (Leaks are checked by the integration tests, which run the daemons directly.)
if [[ " ${MAKEFLAGS:-} " =~ [[:space:]]SANITIZE=[^[:space:]] ]]; then
  mkdir -p "$state/units/service.d"
  printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' > "$state/units/service.d/sanitizer.conf"
  echo "nsboot: sanitizer build; LeakSanitizer off inside the units"
fi
# After the install, because the checkout itself may live under /tmp.
mount -t tmpfs -o mode=1777 tmpfs /tmp

echo "nsboot: starting systemd"
exec env -i container=stemedb-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  SYSTEMD_UNIT_PATH="/usr/local/lib/systemd/system:$state/units" \
  SYSTEMD_GENERATOR_PATH="$state/no-generators" \
  SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$state/no-generators" \
  /lib/systemd/systemd --unit=stemedb-test.target --show-status=no --log-target=journal
