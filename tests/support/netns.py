"""Lab hosts made of network namespaces on this machine, reached over real SSH.

Each host is a network namespace with its own address in 198.18.0.0/24 (the range
reserved for network benchmarking), linked by a veth pair to a bridge in this
machine's own namespace, which plays the control node: ansible-playbook and the
controller run there and reach the hosts over SSH, as on a real lab. Every host runs
its own sshd that accepts a key made for the lab.

Only the network is the hosts' own: they share this machine's files, processes and
packages. So each host gets its own state directory, and Debian's packages are
installed here once (the hosts cannot reach the archive: they have no route out).

A link can be shaped with `tc` on both ends (tbf for bandwidth; netem for delay where
the kernel has it), so that a run shows what a slower network does to large batches.

    python -m tests.support.netns up DIR      # prints the inventory's path
    python -m tests.support.netns down DIR
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
SUBNET = "198.18.0"
CONTROL_ADDRESS = f"{SUBNET}.1"
PACKAGES = ("openssh-server", "haproxy", "prometheus", "prometheus-node-exporter")
SSHD = "/usr/sbin/sshd"
STATE_FILE = "netlab.json"


class NetLabError(RuntimeError):
    """A namespace host could not be made or reached; the message says which and why."""


@dataclass
class Host:
    name: str  # the inventory name
    platform: str  # server or client
    netns: str
    address: str
    veth_host: str  # the host's end, inside its namespace
    veth_bridge: str  # the control node's end, on the bridge


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetLabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def ensure_packages() -> None:
    """sshd and the lab's daemons, from Debian's archive, for hosts that cannot reach it."""
    missing = [
        p
        for p in PACKAGES
        if _run("dpkg-query", "-W", "-f", "${Status}", p, check=False).stdout
        != "install ok installed"
    ]
    # The lab's apt tasks refresh the package lists once a day; fresh lists keep them
    # from trying it inside a namespace.
    _run("apt-get", "update", "-qq")
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if result.returncode != 0:
            raise NetLabError(f"installing {missing} failed: {result.stderr.strip()[-2000:]}")


class NetLab:
    """Namespace hosts, their links and sshds; `up()` makes them, `down()` removes them."""

    def __init__(self, root: Path, servers: int = 1, clients: int = 2, tag: str = "") -> None:
        self.root = root
        # Interface names are at most 15 characters: a short tag keeps labs apart.
        self.tag = tag or f"{os.getpid() % 10000:04d}"
        self.bridge = f"slb{self.tag}"
        names = [("server", "server")] if servers == 1 else []
        names += [(f"server{i + 1}", "server") for i in range(servers if servers > 1 else 0)]
        names += [(f"client{i + 1}", "client") for i in range(clients)]
        self.hosts = [
            Host(
                name=name,
                platform=platform,
                netns=f"sl{self.tag}-{name}",
                address=f"{SUBNET}.{10 + i}",
                veth_host=f"sl{self.tag}h{i}",
                veth_bridge=f"sl{self.tag}b{i}",
            )
            for i, (name, platform) in enumerate(names)
        ]
        self.key = root / "id_ed25519"

    # -- making and removing -------------------------------------------------------------

    def up(self) -> Path:
        """Make every host and return the inventory that reaches them over SSH."""
        if os.geteuid() != 0:
            raise NetLabError("namespace hosts need root (ip netns, veth links, sshd)")
        for tool in ("ip", "tc", "ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise NetLabError(f"{tool} is not installed")
        ensure_packages()
        taken = _run("ip", "route", "show", f"{SUBNET}.0/24").stdout.strip()
        if taken:
            # a second link on the subnet would take the hosts' traffic
            raise NetLabError(f"{SUBNET}.0/24 is already routed ({taken}); remove that link first")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STATE_FILE).write_text(
            json.dumps({"tag": self.tag, "hosts": [asdict(h) for h in self.hosts]})
        )
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{CONTROL_ADDRESS}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            self._forward(True)
            for host in self.hosts:
                self._link(host)
            self._keys()
            for host in self.hosts:
                self._start_sshd(host)
            for host in self.hosts:
                self._wait_for_ssh(host)
        except BaseException:
            self.down()
            raise
        return self.write_inventory()

    def _link(self, host: Host) -> None:
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", host.veth_host, "type", "veth", "peer", "name", host.veth_bridge)
        _run("ip", "link", "set", host.veth_host, "netns", host.netns)
        _run("ip", "link", "set", host.veth_bridge, "master", self.bridge)
        _run("ip", "link", "set", host.veth_bridge, "up")
        inside = ("ip", "netns", "exec", host.netns)
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", host.veth_host)
        _run(*inside, "ip", "link", "set", host.veth_host, "up")

    def _keys(self) -> None:
        for key in (self.key, self.root / "ssh_host_ed25519_key"):
            if not key.exists():
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        shutil.copyfile(f"{self.key}.pub", self.root / "authorized_keys")
        (self.root / "authorized_keys").chmod(0o600)

    def _start_sshd(self, host: Host) -> None:
        config = self.root / f"sshd_{host.name}.conf"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}",
                    f"HostKey {self.root / 'ssh_host_ed25519_key'}",
                    f"PidFile {self.root / f'sshd_{host.name}.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    # the keys live in a temporary directory, not in ~/.ssh
                    "StrictModes no",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        _run(
            "ip",
            "netns",
            "exec",
            host.netns,
            SSHD,
            "-f",
            str(config),
            "-E",
            str(self.root / f"sshd_{host.name}.log"),
        )

    def _wait_for_ssh(self, host: Host, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            tried = self.ssh(host, "true")
            if tried.returncode == 0:
                return
            time.sleep(0.2)
        log = (self.root / f"sshd_{host.name}.log").read_text(errors="replace")[-1500:]
        # what ssh said and where the kernel routes the address tell a blocked path
        # (another link holding the subnet, a firewall) from a refused login
        route = _run("ip", "route", "get", host.address, check=False).stdout.strip()
        raise NetLabError(
            f"sshd of {host.name} at {host.address} did not answer; ssh said "
            f"{tried.stderr.strip()!r}; route: {route!r}; sshd log: {log}"
        )

    def down(self) -> None:
        """Stop the sshds and every process left in the namespaces, remove links and names."""
        for host in self.hosts:
            pids = _run("ip", "netns", "pids", host.netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", host.netns, check=False)  # takes both veth ends
            _run("ip", "link", "del", host.veth_bridge, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        self._forward(False)

    def _forward(self, allow: bool) -> None:
        """Let the bridge forward between its own ports, or take that rule away again.

        Where a Docker engine runs, bridged frames pass iptables' FORWARD chain
        (br_netfilter), whose policy Docker sets to DROP.
        """
        if shutil.which("iptables") is None:
            return
        rule = self._forward_rule()
        present = _run("iptables", "-C", *rule, check=False).returncode == 0
        if allow and not present:
            _run("iptables", "-I", *rule)
        elif not allow and present:
            _run("iptables", "-D", *rule)

    def _forward_rule(self) -> list[str]:
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def leftovers(self) -> list[str]:
        """Namespaces, links and sshds of this lab that still exist (empty after down())."""
        names = _run("ip", "netns", "list").stdout
        links = _run("ip", "-o", "link", "show").stdout
        found = [h.netns for h in self.hosts if h.netns in names]
        found += [
            name
            for name in [self.bridge, *(h.veth_bridge for h in self.hosts)]
            if f" {name}:" in links or f" {name}@" in links
        ]
        rule = self._forward_rule()
        if shutil.which("iptables") and _run("iptables", "-C", *rule, check=False).returncode == 0:
            found.append("iptables " + " ".join(rule))
        ps = _run("ps", "-eo", "stat=,args=").stdout.splitlines()
        found += [
            line for line in ps if not line.startswith("Z") and str(self.root / "sshd_") in line
        ]
        return found

    # -- using -------------------------------------------------------------------------

    def ssh(self, host: Host, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_options(), f"root@{host.address}", *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def shape(self, name: str, rate_mbit: float, delay_ms: float = 0.0) -> None:
        """Limit a host's link to rate_mbit each way (and add delay_ms, where netem exists)."""
        host = self.host(name)
        for prefix, device in (
            (("ip", "netns", "exec", host.netns), host.veth_host),
            ((), host.veth_bridge),
        ):
            # burst: what one timer tick may send at this rate, and never below one
            # large segment (veths pass 64 KiB segments)
            burst = max(int(rate_mbit * 1e6 / 8 / 250), 65536 * 2)
            _run(
                *prefix,
                "tc",
                "qdisc",
                "replace",
                "dev",
                device,
                "root",
                "handle",
                "1:",
                "tbf",
                "rate",
                f"{rate_mbit}mbit",
                "burst",
                str(burst),
                "latency",
                "100ms",
            )
            if delay_ms:
                result = _run(
                    *prefix,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    device,
                    "parent",
                    "1:1",
                    "handle",
                    "10:",
                    "netem",
                    "delay",
                    f"{delay_ms}ms",
                    check=False,
                )
                if result.returncode != 0:
                    raise NetLabError(
                        f"cannot delay {name}'s link: {result.stderr.strip()} (this kernel has"
                        " no netem qdisc; shape the bandwidth only)"
                    )

    def unshape(self, name: str) -> None:
        host = self.host(name)
        _run(
            "ip",
            "netns",
            "exec",
            host.netns,
            "tc",
            "qdisc",
            "del",
            "dev",
            host.veth_host,
            "root",
            check=False,
        )
        _run("tc", "qdisc", "del", "dev", host.veth_bridge, "root", check=False)

    def write_inventory(self, **extra_vars: object) -> Path:
        """An inventory like inventory/two-hosts.example.yml, for these hosts."""

        def entry(host: Host) -> dict[str, object]:
            state = self.root / "hosts" / host.name
            # Host variables: the lab's group_vars/all.yml outranks an inventory's group vars.
            values: dict[str, object] = {
                "ansible_host": host.address,
                "servelab_bind_address": host.address,
                # the hosts share this machine's files: pidfiles and models stay apart
                "servelab_state_dir": str(state / "state"),
                # starting pools over SSH on a busy 2-core machine takes seconds
                "servelab_start_delay_s": 10,
            }
            if host.platform == "server":
                values["servelab_venv"] = str(state / "venv")
            return values

        groups = {
            f"{platform}_platform": {
                "hosts": {h.name: entry(h) for h in self.hosts if h.platform == platform}
            }
            for platform in ("server", "client")
        }
        inventory = {
            "all": {
                "children": groups,
                "vars": {
                    "ansible_connection": "ssh",
                    "ansible_user": "root",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_ssh_private_key_file": str(self.key),
                    "ansible_ssh_common_args": " ".join(self.ssh_options()[2:]),
                    **extra_vars,
                },
            }
        }
        # Ansible reads group_vars/ beside the inventory file: the project's, linked.
        folder = self.root / "inventory"
        folder.mkdir(exist_ok=True)
        if not (folder / "group_vars").exists():
            (folder / "group_vars").symlink_to(PROJECT / "inventory" / "group_vars")
        path = folder / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    @classmethod
    def from_state(cls, root: Path) -> NetLab:
        state = json.loads((root / STATE_FILE).read_text())
        lab = cls(root, tag=state["tag"])
        lab.hosts = [Host(**h) for h in state["hosts"]]
        lab.bridge = f"slb{lab.tag}"
        return lab


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__.strip().splitlines()[-2:], file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "up":
        print(NetLab(root).up())
    else:
        lab = NetLab.from_state(root)
        lab.down()
        if lab.leftovers():
            print(f"left over: {lab.leftovers()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
