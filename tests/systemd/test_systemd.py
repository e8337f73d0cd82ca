"""The systemd units under a real systemd, booted as PID 1 of private namespaces.

nsboot.sh runs `make install` inside the namespaces (overlays on /etc, /var and
/usr/local, so nothing reaches the host) and then execs systemd with a test
target that starts only journald. These tests then start stemedb-node.target,
write and read through port 18180, call the gateway's admin endpoints on 18181,
kill stemedb-api with SIGKILL, and stop the target. Ports 18180 and 18181 are
those of the namespace's own loopback interface. The tests run in file order and
share one booted systemd.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "vectors"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from claims import agent_id, expected_hash, signed, text  # noqa: E402
from node import pow_headers  # noqa: E402

NODE_UNITS = [
    "stemedb-api.socket",
    "stemedb-api.service",
    "stemedb-gateway.service",
    "stemedb-walarchiver.service",
]
ADMIN_TOKEN = uuid.uuid4().hex
API = "http://127.0.0.1:18180"
GATEWAY = "http://127.0.0.1:18181"


def missing_requirement():
    """Return why this machine cannot boot systemd in namespaces, or None."""
    if os.geteuid() != 0:
        return "needs root to create namespaces and boot systemd"
    for tool in ("unshare", "nsenter", "curl", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access("/lib/systemd/systemd", os.X_OK):
        return "/lib/systemd/systemd is not installed"
    with open("/proc/self/mounts") as mounts:
        if not any(line.split()[2] == "cgroup2" for line in mounts):
            return "no cgroup2 hierarchy is mounted"
    return None


pytestmark = pytest.mark.skipif(missing_requirement() is not None,
                                reason=str(missing_requirement()))


def cgroup2_base():
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    raise RuntimeError("no cgroup2 hierarchy is mounted")


class Boot:
    """A systemd booted by nsboot.sh, and commands run inside its namespaces."""

    def __init__(self, log_path):
        self.log_path = log_path
        self.cgroup = os.path.join(cgroup2_base(), f"stemedb-test-{os.getpid()}")
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [os.path.join(HERE, "nsboot.sh"), ROOT, os.path.basename(self.cgroup)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "STEMEDB_NSBOOT_STAGE"})
        self.init_pid = None

    def boot_log(self):
        with open(self.log_path) as f:
            return f.read()[-6000:]

    def wait_running(self, timeout):
        """Wait until systemd inside reports 'running' (make install runs first)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            assert self.process.poll() is None, \
                f"nsboot.sh exited with {self.process.returncode}:\n{self.boot_log()}"
            self.init_pid = self.init_pid or self.find_init()
            if self.init_pid is not None:
                state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.5)
        raise AssertionError(f"systemd not running after {timeout} s (state '{state}'):\n"
                             f"{self.boot_log()}")

    def find_init(self):
        """Return the host pid of the namespace's PID 1 once it is systemd."""
        path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        try:
            with open(path) as f:
                children = f.read().split()
            if not children:
                return None
            with open(f"/proc/{children[0]}/comm") as f:
                return int(children[0]) if f.read().strip() == "systemd" else None
        except FileNotFoundError:
            return None

    def run(self, argv, check=True, input=None, timeout=120, net_only=False):
        """Run argv inside the namespaces (only the network one with net_only)."""
        scope = ["-n"] if net_only else ["-m", "-p", "-u", "-i", "-n"]
        result = subprocess.run(["nsenter", "-t", str(self.init_pid), *scope, "--", *argv],
                                capture_output=True, text=True, input=input, timeout=timeout)
        if check:
            assert result.returncode == 0, \
                f"{argv} exited with {result.returncode}: {result.stdout}{result.stderr}"
        return result

    def curl(self, method, url, body=None, headers=()):
        """Return (status, body) of one HTTP request made inside the namespace."""
        argv = ["curl", "-sS", "-m", "20", "-X", method, "-o", "-", "-w", "\n%{http_code}", url]
        for header in headers:
            argv += ["-H", header]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        result = self.run(argv, check=False, input=body, net_only=True)
        if result.returncode != 0:
            return 0, result.stderr
        text_out, _, code = result.stdout.rpartition("\n")
        return int(code), text_out

    def unit_property(self, unit, name):
        return self.run(["systemctl", "show", "-P", name, unit]).stdout.strip()

    def journal(self, unit):
        return self.run(["journalctl", "--no-pager", "-n", "60", "-u", unit], check=False).stdout

    def shutdown(self):
        """Stop systemd cleanly, or kill the whole namespace, then remove the cgroup."""
        if self.init_pid is not None and self.process.poll() is None:
            self.run(["systemctl", "--force", "exit", "0"], check=False, timeout=30)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # SIGKILL to a PID namespace's init ends every process in it.
            if self.init_pid is not None:
                os.kill(self.init_pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()
        remove_cgroup(self.cgroup)


def remove_cgroup(path):
    """Remove a cgroup tree bottom-up; every process in it has exited."""
    if not os.path.isdir(path):
        return
    for current, _, _ in sorted(os.walk(path), key=lambda item: -len(item[0])):
        try:
            os.rmdir(current)
        except OSError as error:
            print(f"could not remove cgroup {current}: {error}", file=sys.stderr)


@pytest.fixture(scope="module")
def boot(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("nsboot") / "nsboot.log"
    booted = Boot(str(log_path))
    try:
        booted.wait_running(timeout=600)
        yield booted
    finally:
        booted.shutdown()


def wait_active(boot, units, timeout=60):
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        states = {unit: boot.unit_property(unit, "ActiveState") for unit in units}
        if all(state == "active" for state in states.values()):
            return
        time.sleep(0.5)
    logs = "\n".join(boot.journal(unit) for unit in units if states.get(unit) != "active")
    raise AssertionError(f"units not active after {timeout} s: {states}\n{logs}")


def write_claims(boot, subject, count, start=0):
    """Write count assertions; return the hashes of those acknowledged with 201."""
    acknowledged = []
    for i in range(start, start + count):
        claim = signed(1, subject, f"p{i % 3}", text(f"v{i}"))
        # The units run with the production defaults, so admission requests a proof of
        # work from this new agent. 16 bits meet every difficulty it can request.
        proof = [f"{name}: {value}" for name, value in pow_headers(agent_id(1), 16).items()]
        status, body = boot.curl("POST", f"{API}/v1/assert", json.dumps(claim), headers=proof)
        if status == 201:
            assert json.loads(body)["hash"] == expected_hash(claim), body
            acknowledged.append(expected_hash(claim))
    return acknowledged


def test_units_pass_systemd_analyze_verify(boot):
    unit_dir = "/usr/local/lib/systemd/system"
    units = boot.run(["ls", unit_dir]).stdout.split()
    assert "stemedb-api.service" in units, f"installed units: {units}"
    result = boot.run(["systemd-analyze", "verify", *[f"{unit_dir}/{u}" for u in units]],
                      check=False)
    assert result.returncode == 0, f"systemd-analyze verify: {result.stdout}{result.stderr}"
    assert result.stderr.strip() == "", f"systemd-analyze verify warned: {result.stderr}"


def test_make_install_created_user_and_env(boot):
    user = boot.run(["getent", "passwd", "stemedb"], check=False)
    assert user.returncode == 0, f"no stemedb user after make install: {user.stderr}"
    mode = boot.run(["stat", "-c", "%a %U %G", "/etc/stemedb/stemedb.env"]).stdout.strip()
    assert mode == "640 root stemedb", f"/etc/stemedb/stemedb.env is {mode}"


def test_node_target_starts_every_unit(boot):
    # The admin token goes into the environment file, as an operator would set it.
    boot.run(["tee", "-a", "/etc/stemedb/stemedb.env"],
             input=f"STEMEDB_ADMIN_TOKEN={ADMIN_TOKEN}\n")
    boot.run(["systemctl", "start", "stemedb-node.target"])

    wait_active(boot, NODE_UNITS + ["stemedb-node.target"])
    for unit in NODE_UNITS[1:]:
        assert boot.unit_property(unit, "User") == "stemedb", unit


def test_daemons_send_watchdog_pings(boot):
    # systemd stores the time of the last WATCHDOG=1. With WatchdogSec=30s the
    # daemons ping every 15 s, so each timestamp must move within 17 s.
    daemons = NODE_UNITS[1:]
    for unit in daemons:
        assert boot.unit_property(unit, "WatchdogUSec") == "30s", unit
    before = {unit: int(boot.unit_property(unit, "WatchdogTimestampMonotonic")) for unit in daemons}
    time.sleep(17)
    after = {unit: int(boot.unit_property(unit, "WatchdogTimestampMonotonic")) for unit in daemons}
    for unit in daemons:
        assert after[unit] > before[unit], f"{unit}: no watchdog ping ({before[unit]} -> {after[unit]})"


def test_api_uses_the_activated_socket(boot):
    # The listening socket belongs to systemd (pid 1) as well as stemedb-api.
    listeners = boot.run(["ss", "-Htlnp", "sport = :18180"]).stdout
    assert '"systemd",pid=1' in listeners, f"18180 listeners: {listeners}"
    assert "stemedb-api" in listeners, f"18180 listeners: {listeners}"


def test_write_and_read_through_18180(boot):
    hashes = write_claims(boot, "systemd/write", 5)
    assert len(hashes) == 5, f"acknowledged {len(hashes)} of 5 writes"

    for digest in hashes:
        status, body = boot.curl("GET", f"{API}/v1/assertions/{digest}")
        assert status == 200, f"{digest}: {status} {body}"
        assert json.loads(body)["subject"] == "systemd/write", body


def test_gateway_health_and_status(boot):
    status, body = boot.curl("GET", f"{GATEWAY}/v1/health")
    assert status == 200, f"health: {status} {body}"
    status, body = boot.curl("GET", f"{GATEWAY}/v1/cluster/status")
    assert status == 200, f"cluster status: {status} {body}"


def test_admin_requires_the_token(boot):
    status, body = boot.curl("POST", f"{GATEWAY}/v1/admin/compact")
    assert status == 401, f"compact without token: {status} {body}"

    status, body = boot.curl("POST", f"{GATEWAY}/v1/admin/compact",
                             headers=["Authorization: Bearer wrong-token"])
    assert status in (401, 403), f"compact with a wrong token: {status} {body}"


def test_admin_endpoints_with_token(boot):
    auth = [f"Authorization: Bearer {ADMIN_TOKEN}"]
    for path in ("/v1/admin/compact", "/v1/admin/indexes/rebuild"):
        status, body = boot.curl("POST", f"{GATEWAY}{path}", headers=auth)
        assert 200 <= status < 300, f"{path}: {status} {body}"


def test_admin_not_served_on_18180(boot):
    status, body = boot.curl("POST", f"{API}/v1/admin/compact",
                             headers=[f"Authorization: Bearer {ADMIN_TOKEN}"])
    assert status == 404, f"/v1/admin/compact on 18180: {status} {body}"


def test_sigkill_restarts_api_without_loss(boot):
    before = write_claims(boot, "systemd/kill", 20)
    assert len(before) == 20, f"acknowledged {len(before)} of 20 writes before the kill"
    restarts = int(boot.unit_property("stemedb-api.service", "NRestarts"))
    old_pid = boot.unit_property("stemedb-api.service", "MainPID")

    boot.run(["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=main",
              "stemedb-api.service"])
    # Writes sent during the restart wait in the socket's backlog; any that get a
    # 201 must survive as well.
    during = write_claims(boot, "systemd/kill", 20, start=20)

    wait_active(boot, ["stemedb-api.service"])
    assert int(boot.unit_property("stemedb-api.service", "NRestarts")) == restarts + 1
    assert boot.unit_property("stemedb-api.service", "MainPID") != old_pid
    for digest in before + during:
        status, body = boot.curl("GET", f"{API}/v1/assertions/{digest}")
        assert status == 200, f"acknowledged write {digest} lost after SIGKILL: {status} {body}"


def test_backup_and_verify_services(boot):
    help_text = boot.run(["/usr/local/bin/stemedb-ctl", "--help"], check=False)
    if "backup" not in help_text.stdout + help_text.stderr:
        pytest.skip("this stemedb-ctl has no backup command yet")

    for unit in ("stemedb-backup.service", "stemedb-backup-verify.service"):
        result = boot.run(["systemctl", "start", unit], check=False, timeout=600)
        assert result.returncode == 0, f"{unit}: {result.stderr}\n{boot.journal(unit)}"
        assert boot.unit_property(unit, "Result") == "success", boot.journal(unit)
    backups = boot.run(["ls", "/var/lib/stemedb/backups"]).stdout.split()
    assert len(backups) == 1, f"backups: {backups}"


def test_timers_load(boot):
    for timer in ("stemedb-backup.timer", "stemedb-backup-verify.timer"):
        boot.run(["systemctl", "start", timer])
        assert boot.unit_property(timer, "ActiveState") == "active", timer
        assert boot.unit_property(timer, "NextElapseUSecRealtime") != "", timer


def test_stop_target_stops_cleanly(boot):
    boot.run(["systemctl", "stop", "stemedb-node.target"], timeout=300)

    # The target's stop job ends first (it is ordered after the daemons), so the
    # daemons may still be finishing their graceful stop here.
    deadline = time.monotonic() + 120
    states = {}
    while time.monotonic() < deadline:
        states = {unit: boot.unit_property(unit, "ActiveState") for unit in NODE_UNITS}
        if all(state in ("inactive", "failed") for state in states.values()):
            break
        time.sleep(0.5)
    for unit in NODE_UNITS:
        assert states[unit] == "inactive", f"{unit} is {states[unit]} after stop:\n{boot.journal(unit)}"
        result = boot.unit_property(unit, "Result")
        assert result == "success", f"{unit} stopped with {result}:\n{boot.journal(unit)}"
