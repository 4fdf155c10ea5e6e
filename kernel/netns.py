"""A test bed of network namespaces for one point: the target in one, Locust in the others.

    server namespace   br0 198.18.0.1/15                 the target listens here
       ├── veth c0 ── client namespace 0: eth0 198.18.1.1 .. 198.18.1.N    Locust (or its master)
       └── veth c1 ── client namespace 1: eth0 198.18.2.1 .. 198.18.2.N    Locust workers ...

Addresses are in 198.18.0.0/15, the range set aside for benchmarking (RFC 2544). Each namespace's
sysctls come from the kernel profile and are set inside it, so the host's stay as they are.
A profile's [firewall] is applied with Debian's nft inside the server namespace before its
sysctls: its `ct state` rules load nf_conntrack, whose per-namespace timeouts only exist then.

Each namespace is held open by a holder process (`unshare --net sleep infinity`) rather than a
name under /run/netns. The kernel frees a namespace when the last process in it exits, and the
holders and everything started inside die with the runner (PR_SET_PDEATHSIG), so no namespace
or veth outlives a run, even one killed with SIGKILL. Both ends of every veth are created inside
their namespaces: nothing appears on the host, even for a moment.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.errors import WsbenchError
from common.procs import die_with_parent
from kernel.profile import FIREWALL_COUNTERS, NFT_TABLE, Profile, ProfileError
from kernel.profile import load as load_profile
from kernel.profile import names as profile_names

NETWORK = ipaddress.ip_network("198.18.0.0/15")
SERVER_ADDRESS = "198.18.0.1"
HOLDER_START_S = 5.0
COMMAND_TIMEOUT_S = 30.0
# Per-namespace sysctls recorded for every namespace (as well as the ones a profile sets), so
# a result says what was in force even where the profile left the kernel's default.
RECORDED_SYSCTLS = (
    "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
    "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_max_tw_buckets",
)  # fmt: skip
# Read in the server namespace when it has a firewall: the table's size (host-wide, read-only
# there) and the timeouts that decide how long a closed connection keeps its entry.
CONNTRACK_SYSCTLS = (
    "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv",
)  # fmt: skip
NFT = ("nft", "nftables")  # the command a [firewall] runs, and its Debian package
# Capabilities a test bed needs: NET_ADMIN for links and sysctls, SYS_ADMIN for setns/unshare.
CAPABILITIES = ((12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN"))
TOOLS = (("ip", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux"))

Say = Callable[[str], None]


class KernelError(WsbenchError):
    """A test bed could not be built or used; the message is one line for the user."""


def client_address(host: int, n: int) -> str:
    """The n-th source address (from 0) of client host `host` (from 0): 198.18.<host+1>.<n+1>."""
    return f"198.18.{host + 1}.{n + 1}"


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_privileges() -> list[str]:
    """What this process lacks to build namespaces: capabilities and commands, by name."""
    caps = _effective_capabilities()
    missing = [name for bit, name in CAPABILITIES if not caps & (1 << bit)]
    missing += [f"the {tool} command ({package})" for tool, package in TOOLS
                if shutil.which(tool) is None]  # fmt: skip
    return missing


def check_firewall(profile: Profile) -> None:
    """KernelError naming the package unless the profile's [firewall] can be applied."""
    if profile.firewall is not None and shutil.which(NFT[0]) is None:
        raise KernelError(
            f"kernel profile {profile.name!r} has a [firewall], applied with the {NFT[0]} "
            f"command, which is missing: install the Debian package {NFT[1]} "
            f"(apt-get install {NFT[1]})"
        )


def check_privileges(profile: str | Profile) -> None:
    """KernelError saying what is missing (and what still works) unless namespaces can be made
    (and, for a profile with a [firewall], unless nft is there to apply it)."""
    if isinstance(profile, str):
        profile_name = profile
        with contextlib.suppress(ProfileError):  # a shipped name: its [firewall] is checked
            if profile in profile_names():
                check_firewall(load_profile(profile))
    else:
        profile_name = profile.name
        check_firewall(profile)
    missing = missing_privileges()
    if not missing:
        refused = _unshare_refused()
        if refused is None:
            return
        missing = [f"permission to create network namespaces ({refused})"]
    raise KernelError(
        f"kernel profile {profile_name!r} runs in network namespaces, which need "
        f"{', '.join(missing)}; run as root, or use --kernel-profile host, which still "
        "runs and records this host's own settings"
    )


@functools.lru_cache(maxsize=1)
def _unshare_refused() -> str | None:
    """Why this process may not create a network namespace (tried once), or None if it may."""
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else _last(probe.stderr)


def _last(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _netns_of(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


class Namespace:
    """One network namespace, held open by a holder process for as long as it is needed."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent(os.getpid(), signal.SIGKILL),
        )  # fmt: skip
        own = _netns_of("self")
        deadline = time.monotonic() + HOLDER_START_S
        while (ns := _netns_of(self.proc.pid)) in (own, None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(5)
                why = _last(self.proc.stderr.read().decode()) if self.proc.stderr else ""
                self.close()
                if time.monotonic() > deadline:
                    why = f"no namespace after {HOLDER_START_S:g} s"
                raise KernelError(f"cannot create the {role} network namespace: {why}")
            time.sleep(0.005)
        self.inode = ns

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def net_dir(self) -> Path:
        """/proc/<holder>/net: this namespace's /proc/net, readable from outside it."""
        return Path(f"/proc/{self.pid}/net")

    def enter(self) -> list[str]:
        """A command prefix that runs a command inside this namespace (same pid: nsenter execs)."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--"]

    def run(self, *cmd: str, stdin: str | None = None) -> str:
        done = _run([*self.enter(), *cmd], stdin)
        if done.returncode != 0:
            raise KernelError(f"{self.role} namespace: {' '.join(cmd)}: {_last(done.stderr)}")
        return done.stdout

    def sysctls(self, values: Mapping[str, str], read: Iterable[str] = ()) -> dict[str, str]:
        """Set `values` here, then return them and the `read` keys that exist, as in force."""
        args = [f"{k}={v}" for k, v in values.items()]
        args += [f"{k}?" for k in read if k not in values]
        done = _run([*self.enter(), sys.executable, "-m", "kernel.inside", *args])
        try:
            reply = json.loads(done.stdout)
        except ValueError:
            raise KernelError(f"{self.role} namespace: cannot set sysctls: "
                              f"{_last(done.stderr)}") from None  # fmt: skip
        if "error" in reply:
            raise KernelError(f"{self.role} namespace: {reply['error']}")
        return reply["values"]

    def members(self) -> list[int]:
        """Processes inside this namespace other than the holder."""
        found = []
        for entry in Path("/proc").iterdir():
            if (
                entry.name.isdigit()
                and int(entry.name) != self.pid
                and _netns_of(entry.name) == getattr(self, "inode", None)
            ):
                found.append(int(entry.name))
        return found

    def close(self) -> list[int]:
        """Kill whatever still runs inside, then the holder; returns the pids that were left."""
        left = self.members() if hasattr(self, "inode") else []
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return left


class Testbed:
    """The namespaces of one point, built on enter and removed on exit, whatever happened."""

    def __init__(
        self, profile: Profile, client_hosts: int = 1, client_addresses: int = 1,
        host_sysctls: bool = False, say: Say = print,
    ) -> None:  # fmt: skip
        self.profile = profile
        self.client_hosts = client_hosts
        self.client_addresses = client_addresses
        self.host_sysctls = host_sysctls
        self.say = say
        self.server: Namespace | None = None
        self.clients: list[Namespace] = []
        self.in_force: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def open(self) -> Testbed:
        """Build every namespace; on any failure, remove what was built and raise."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Testbed:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def addresses(self, host: int) -> list[str]:
        return [client_address(host, n) for n in range(self.client_addresses)]

    def namespaces(self) -> dict[str, Namespace]:
        """Each namespace by the side name its counters are stored under."""
        sides = {"server": self.server} if self.server else {}
        if len(self.clients) == 1:
            sides["client"] = self.clients[0]
        else:
            sides.update({f"client{k}": ns for k, ns in enumerate(self.clients)})
        return sides  # type: ignore[return-value]

    def firewall_counters(self) -> dict[str, dict[str, int]]:
        """{"server": the firewall's counters} when the profile has a [firewall], else {}."""
        if self.profile.firewall is None or self.server is None:
            return {}
        return {"server": firewall_counters(self.server)}

    def _build(self) -> None:
        check_firewall(self.profile)  # before the host's sysctls change
        if self.profile.host:
            from kernel import hostsysctl

            if not self.host_sysctls:
                raise KernelError(f"profile {self.profile.name} changes host-wide sysctls; "
                                  "pass --host-sysctls")  # fmt: skip
            self.in_force["host"] = self._stack.enter_context(
                hostsysctl.applied(self.profile.host, self.say)
            )
        server = self.server = Namespace("server")
        for k in range(self.client_hosts):  # one by one: close() must see every one made
            self.clients.append(Namespace(f"client{k}"))
        server.run("ip", "-batch", "-", stdin="\n".join([
            "link set lo up",
            "link add br0 type bridge forward_delay 0",
            f"addr add {SERVER_ADDRESS}/{NETWORK.prefixlen} dev br0",
            "link set br0 up",
        ]) + "\n")  # fmt: skip
        for k, client in enumerate(self.clients):
            _ip("link", "add", "name", f"c{k}", "netns", str(server.pid), "type", "veth",
                "peer", "name", "eth0", "netns", str(client.pid))  # fmt: skip
            server.run("ip", "link", "set", f"c{k}", "master", "br0", "up")
            lines = ["link set lo up", "link set eth0 up"]
            lines += [f"addr add {a}/{NETWORK.prefixlen} dev eth0" for a in self.addresses(k)]
            client.run("ip", "-batch", "-", stdin="\n".join(lines) + "\n")
        recorded = RECORDED_SYSCTLS
        if self.profile.firewall is not None:
            self.in_force["firewall"] = apply_firewall(server, self.profile)
            recorded += CONNTRACK_SYSCTLS
        self.in_force["server"] = server.sysctls(self.profile.server, recorded)
        for side, ns in self.namespaces().items():
            if side != "server":
                self.in_force[side] = ns.sysctls(self.profile.client, RECORDED_SYSCTLS)

    def close(self) -> list[str]:
        """Remove every namespace (killing what is left in them) and restore host sysctls."""
        left = []
        for ns in [*self.clients, *([self.server] if self.server else [])]:
            left += [f"{ns.role}: pid {pid}" for pid in ns.close()]
        self.clients, self.server = [], None
        self._stack.close()
        return left


def apply_firewall(ns: Namespace, profile: Profile) -> dict[str, str]:
    """Put the profile's rules in `ns` with nft; the rule set as `nft list ruleset` prints it."""
    assert profile.firewall is not None
    ns.run(NFT[0], "-f", "-", stdin=profile.firewall.ruleset(SERVER_ADDRESS))
    return {"ruleset": ns.run(NFT[0], "list", "ruleset")}


def firewall_counters(ns: Namespace) -> dict[str, int]:
    """The firewall's named nft counters in `ns` (packets) by their record names
    (profile.FIREWALL_COUNTERS); {} when they cannot be read (a diagnostic, as all counters)."""
    try:
        listed = json.loads(ns.run(NFT[0], "-j", "list", "counters", "table", "inet", NFT_TABLE))
    except (KernelError, ValueError):
        return {}
    found = {}
    for entry in listed.get("nftables", []) if isinstance(listed, dict) else []:
        counter = entry.get("counter") if isinstance(entry, dict) else None
        if isinstance(counter, dict) and counter.get("name") in FIREWALL_COUNTERS:
            found[FIREWALL_COUNTERS[counter["name"]]] = int(counter.get("packets", 0))
    return found


def _run(cmd: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A set-up command, its output captured; KernelError if it hangs."""
    try:
        return subprocess.run(list(cmd), input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise KernelError(f"{' '.join(cmd)} took over {COMMAND_TIMEOUT_S:g} s") from None


def _ip(*args: str) -> None:
    done = _run(["ip", *args])
    if done.returncode != 0:
        raise KernelError(f"ip {' '.join(args)}: {_last(done.stderr)}")


def describe(bed: Testbed) -> Sequence[str]:
    """Lines for the run's output: where things run and how to look inside while they do."""
    assert bed.server is not None
    lines = [f"server namespace (holder pid {bed.server.pid}): {SERVER_ADDRESS}"]
    for k, ns in enumerate(bed.clients):
        addrs = bed.addresses(k)
        shown = addrs[0] if len(addrs) == 1 else f"{addrs[0]} .. {addrs[-1]} ({len(addrs)})"
        lines.append(f"client namespace {k} (holder pid {ns.pid}): {shown}")
    lines.append(f"look inside: nsenter --net=/proc/{bed.server.pid}/ns/net ss -s")
    return lines


def fresh_values(keys: Iterable[str]) -> dict[str, str] | None:
    """The values a fresh network namespace gets for `keys` (those that exist there), or None
    when this process cannot create one."""
    if missing_privileges():
        return None
    try:
        done = _run(["unshare", "--net", "--", sys.executable, "-m", "kernel.inside",
                     *(f"{k}?" for k in keys)])  # fmt: skip
        return json.loads(done.stdout)["values"]
    except (KernelError, ValueError, KeyError):
        return None
