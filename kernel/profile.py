"""Kernel profiles: sysctls and limits as data (kernel/profiles/*.toml), loaded and checked.

A profile names the sysctls to set inside the server namespace and inside each client namespace,
the host-wide sysctls kept apart (applied only with --host-sysctls), the open-file limit of the
target and Locust processes, and the client topology (source addresses per client host):

    description = "..."
    extends = "tuned"                 # optional: start from another profile
    [server.sysctls]  "net.core.somaxconn" = 65535
    [client.sysctls]  "net.ipv4.ip_local_port_range" = "1024 65535"
    [host.sysctls]    "net.core.netdev_max_backlog" = 16384
    [rlimits]         nofile = 20000 | "hard"
    [topology]        client_addresses = "auto" | N   # N: exactly N source addresses per client
    [firewall]        new_per_source_per_s = N, new_burst = B     # both optional

A [firewall] section (even an empty one) puts a stateful nftables firewall in the server
namespace: established/related accepted, invalid dropped, loopback accepted, new TCP connections
(a SYN) to the server address accepted on any port (the target's port, and a proxy's, are chosen
after the namespaces exist), optionally at most N per second per source address (B at once),
everything else dropped (policy drop). Its `ct state` rules make the kernel track connections,
so the conntrack table (net.netfilter.nf_conntrack_max, host-wide: [host.sysctls]) and its
timeouts (net.netfilter.nf_conntrack_tcp_timeout_*, per namespace: [server.sysctls]) apply.

`--kernel-profile NAME` finds kernel/profiles/NAME.toml; a path to a .toml file works too.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import BadInput

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
HOST_PROFILE = "host"  # not a file: the host's own settings, no namespaces
SIDES = ("server", "client")
MAX_CLIENT_ADDRESSES = 250  # per client host: 198.18.<host>.1 .. .250
AUTO = "auto"
# Keys that are one value for the whole machine, whatever namespace writes them: a profile may
# change them only under [host.sysctls], and a run only with --host-sysctls. (rmem_max and
# wmem_max became per namespace in Linux 6.14; they stay here so a profile means the same thing
# on every kernel.)
GLOBAL_PREFIXES = ("fs.", "vm.", "kernel.", "net.netfilter.nf_conntrack_max",
                   "net.nf_conntrack_max")  # fmt: skip
GLOBAL_KEYS = frozenset({
    "net.ipv4.tcp_mem", "net.ipv4.udp_mem", "net.core.rmem_max", "net.core.wmem_max",
    "net.core.netdev_max_backlog", "net.ipv4.tcp_max_orphans", "net.core.optmem_max",
})  # fmt: skip
_KEY = re.compile(r"[a-z0-9_]+(\.[a-z0-9_-]+)+")
_TOP_KEYS = {"description", "extends", "server", "client", "host", "rlimits", "topology",
             "firewall"}  # fmt: skip
FIREWALL_KEYS = ("new_per_source_per_s", "new_burst")
MAX_FIREWALL_RATE = 1_000_000
NFT_TABLE = "wsbench"
# The firewall's named nft counters and the counter names the point's records give them.
FIREWALL_COUNTERS = {
    "invalid": "FirewallInvalidDrop",
    "rate_limited": "FirewallRateLimitDrop",
    "refused": "FirewallPolicyDrop",
}


class ProfileError(BadInput, ValueError):
    """A profile that does not exist or does not make sense; the message is one line."""


def is_global(key: str) -> bool:
    """Whether a sysctl is host-wide on Linux (not per network namespace)."""
    return key in GLOBAL_KEYS or key.startswith(GLOBAL_PREFIXES)


@dataclass(frozen=True)
class Firewall:
    """The stateful rules of a [firewall] section; None fields: no per-source limit."""

    new_per_source_per_s: int | None = None
    new_burst: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"new_per_source_per_s": self.new_per_source_per_s, "new_burst": self.new_burst}

    def ruleset(self, server_address: str) -> str:
        """The nft script (for `nft -f -`) that puts these rules in a namespace; every drop
        other than conntrack's own counts in one of the named counters of FIREWALL_COUNTERS."""
        rate = self.new_per_source_per_s
        syn = f"ip daddr {server_address} tcp flags syn / syn,ack ct state new"
        limit = [
            f"\t\t{syn} add @new_sources {{ ip saddr limit rate over {rate}/second burst "
            f"{self.new_burst or rate} packets }} counter name rate_limited drop"
        ] if rate else []  # fmt: skip
        sources = ["\tset new_sources {", "\t\ttype ipv4_addr; flags dynamic; timeout 60s;",
                   "\t}"] if rate else []  # fmt: skip
        return "\n".join([
            f"table inet {NFT_TABLE} {{", *sources,
            *(f"\tcounter {name} {{ }}" for name in FIREWALL_COUNTERS),
            "\tchain input {",
            "\t\ttype filter hook input priority filter; policy drop;",
            "\t\tct state established,related accept",
            "\t\tct state invalid counter name invalid drop",
            '\t\tiif "lo" accept',
            *limit,
            f"\t\t{syn} accept",
            "\t\tcounter name refused",  # what the policy drops next
            "\t}", "}", "",
        ])  # fmt: skip


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    path: Path
    server: dict[str, str] = field(default_factory=dict)
    client: dict[str, str] = field(default_factory=dict)
    host: dict[str, str] = field(default_factory=dict)
    nofile: int | str | None = None  # None or "hard": the hard limit in force
    client_addresses: int | None = None  # None ("auto"): as many as the port range needs
    extends: str | None = None
    firewall: Firewall | None = None  # None: no [firewall] section, no rules, no conntrack

    def sysctls(self, side: str) -> dict[str, str]:
        return {"server": self.server, "client": self.client, "host": self.host}[side]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "file": str(self.path),
            "extends": self.extends, "server_sysctls": self.server, "client_sysctls": self.client,
            "host_sysctls": self.host, "rlimits": {"nofile": self.nofile},
            "topology": {"client_addresses": self.client_addresses or AUTO},
            "firewall": self.firewall.as_dict() if self.firewall else None,
        }  # fmt: skip

    def port_range(self) -> tuple[int, int] | None:
        """The client's ephemeral port range if the profile sets it."""
        value = self.client.get("net.ipv4.ip_local_port_range")
        return parse_port_range(value) if value else None


def parse_port_range(value: str) -> tuple[int, int]:
    low, high = (int(v) for v in value.split())
    return low, high


def sysctl_value(value: object, key: str) -> str:
    """A TOML value as the kernel prints it: numbers as text, several numbers space-separated."""
    if isinstance(value, bool) or not isinstance(value, int | str | list):
        raise ProfileError(f"{key}: a sysctl value is a number or a string, got {value!r}")
    if isinstance(value, list):
        if not all(isinstance(v, int | str) and not isinstance(v, bool) for v in value):
            raise ProfileError(f"{key}: a list holds numbers or strings, got {value!r}")
        value = " ".join(str(v) for v in value)
    text = " ".join(str(value).split())
    if not text:
        raise ProfileError(f"{key}: empty value")
    return text


def names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def find(name: str) -> Path:
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ProfileError(f"kernel profile file {name} does not exist")
        return path
    path = PROFILE_DIR / f"{name}.toml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path.is_file():
        raise ProfileError(
            f"unknown kernel profile {name!r}: choose {HOST_PROFILE} (no namespaces), one of "
            f"{', '.join(names())}, or a path to a .toml file"
        )
    return path


def load(name: str, _seen: tuple[Path, ...] = (), _base: Path | None = None) -> Profile:
    """The profile called `name` (or at that .toml path), checked; ProfileError otherwise."""
    if name == HOST_PROFILE:
        raise ProfileError(f"{HOST_PROFILE!r} is not a profile file: it means no namespaces")
    if _base is not None and name.endswith(".toml"):
        name = str(_base / name)  # an `extends` path is relative to the file that says it
    path = find(name)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"kernel profile {path}: cannot read it: {exc}") from None
    where = f"kernel profile {path.name}"
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ProfileError(f"{where}: unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    extends = data.get("extends")
    base = _extended(extends, path, _seen, where)
    description = data.get("description", "")
    if not isinstance(description, str) or not description.strip():
        raise ProfileError(f"{where}: needs a description saying what it is for")
    sides = _sides(data, base, where)
    profile = Profile(
        name=path.stem, description=" ".join(description.split()), path=path,
        server=sides["server"], client=sides["client"], host=sides["host"],
        nofile=_nofile(data, base, where), client_addresses=_client_addresses(data, base, where),
        extends=extends, firewall=_firewall(data, base, where),
    )  # fmt: skip
    _check_port_range(profile, where)
    return profile


def _extended(extends: object, path: Path, seen: tuple[Path, ...], where: str) -> Profile | None:
    """The profile this one extends (loaded and checked), None when it extends none."""
    if extends is None:
        return None
    seen = (*seen, path.resolve())
    if not isinstance(extends, str) or _resolved(extends, path.parent) in seen:
        raise ProfileError(f"{where}: extends {extends!r} is not another profile")
    try:
        return load(extends, seen, path.parent)
    except ProfileError as exc:
        raise ProfileError(f"{where}: extends {extends!r}: {exc}") from None


def _sides(data: dict[str, Any], base: Profile | None, where: str) -> dict[str, dict[str, str]]:
    """Each side's sysctls: the base profile's, with this file's laid over them."""
    sides = {}
    for side in (*SIDES, "host"):
        table = _table(data, side, where)
        own = _sysctls(table.get("sysctls", {}), f"{where} [{side}.sysctls]", side)
        extra = sorted(set(table) - {"sysctls"})
        if extra:
            raise ProfileError(f"{where}: [{side}] holds only sysctls, not {extra}")
        sides[side] = {**(base.sysctls(side) if base else {}), **own}
    return sides


def _nofile(data: dict[str, Any], base: Profile | None, where: str) -> int | str | None:
    rlimits = _table(data, "rlimits", where)
    if set(rlimits) - {"nofile"}:
        raise ProfileError(f"{where}: [rlimits] knows only nofile, got {sorted(rlimits)}")
    nofile = rlimits.get("nofile", base.nofile if base else None)
    if nofile is not None and nofile != "hard" and (
        isinstance(nofile, bool) or not isinstance(nofile, int) or nofile < 64
    ):
        raise ProfileError(f"{where}: rlimits.nofile must be a number >= 64 or \"hard\"")
    return nofile


def _client_addresses(data: dict[str, Any], base: Profile | None, where: str) -> int | None:
    topology = _table(data, "topology", where)
    if set(topology) - {"client_addresses"}:
        raise ProfileError(f"{where}: [topology] knows only client_addresses")
    addresses = topology.get("client_addresses", (base.client_addresses if base else None) or AUTO)
    if addresses == AUTO:
        return None
    if isinstance(addresses, bool) or not isinstance(addresses, int) or not (
        1 <= addresses <= MAX_CLIENT_ADDRESSES
    ):
        raise ProfileError(
            f"{where}: topology.client_addresses must be \"{AUTO}\" or 1..{MAX_CLIENT_ADDRESSES}"
        )
    return addresses


def _firewall(data: dict[str, Any], base: Profile | None, where: str) -> Firewall | None:
    """The [firewall] section laid over the base profile's; None when neither has one."""
    inherited = base.firewall if base else None
    if "firewall" not in data:
        return inherited
    table = _table(data, "firewall", where)
    unknown = sorted(set(table) - set(FIREWALL_KEYS))
    if unknown:
        raise ProfileError(f"{where}: [firewall] knows only {', '.join(FIREWALL_KEYS)}, "
                           f"not {', '.join(unknown)}")  # fmt: skip
    values = {**(inherited.as_dict() if inherited else {}), **table}
    for key in FIREWALL_KEYS:
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= MAX_FIREWALL_RATE):  # fmt: skip
            raise ProfileError(f"{where}: firewall.{key} must be a whole number "
                               f"1..{MAX_FIREWALL_RATE:,}, got {value!r}")  # fmt: skip
    if values.get("new_burst") is not None and values.get("new_per_source_per_s") is None:
        raise ProfileError(f"{where}: firewall.new_burst needs firewall.new_per_source_per_s")
    return Firewall(values.get("new_per_source_per_s"), values.get("new_burst"))


def _check_port_range(profile: Profile, where: str) -> None:
    if "net.ipv4.ip_local_port_range" in profile.client:
        try:
            low, high = parse_port_range(profile.client["net.ipv4.ip_local_port_range"])
        except ValueError:
            raise ProfileError(f"{where}: ip_local_port_range must be two numbers") from None
        if not 1 <= low <= high <= 65535:
            raise ProfileError(f"{where}: ip_local_port_range {low} {high} is not a range")


def _resolved(name: str, base: Path) -> Path | None:
    try:
        return find(str(base / name) if name.endswith(".toml") else name).resolve()
    except ProfileError:
        return None  # load() says why


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: {key} must be a table")
    return table


def _sysctls(table: object, where: str, side: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ProfileError(f"{where} must be a table of \"name\" = value")
    out = {}
    for key, value in table.items():
        if not _KEY.fullmatch(key):
            raise ProfileError(f"{where}: {key!r} is not a sysctl name like net.core.somaxconn")
        if side != "host" and is_global(key):
            raise ProfileError(
                f"{where}: {key} is host-wide on Linux, not per network namespace; put it "
                "under [host.sysctls] (applied only with --host-sysctls)"
            )
        if side == "host" and not is_global(key):
            raise ProfileError(
                f"{where}: {key} is per network namespace; put it under [server.sysctls] "
                "or [client.sysctls]"
            )
        out[key] = sysctl_value(value, f"{where}: {key}")
    return out


def sysctl_lines(profile: Profile) -> list[str]:
    """The commands that apply the profile on real machines, grouped by where they run."""
    lines = []
    if profile.firewall is not None:  # first: its `ct` rules make the conntrack sysctls exist
        lines += ["# the firewall, on the server, first (put its own address for the test bed's "
                  "198.18.0.1; the table wsbench replaces nothing else; policy drop: check "
                  "that what else the server serves is a new TCP connection or answers)",
                  "nft -f - <<'EOF'", *profile.firewall.ruleset("198.18.0.1").splitlines(),
                  "EOF"]  # fmt: skip
    groups = (
        ("server", "# on the server machine"),
        ("client", "# on each load-generating machine"),
        ("host", "# host-wide: on the server (and the load generators if they need it)"),
    )
    for side, comment in groups:
        values = profile.sysctls(side)
        if values:
            lines.append(comment)
            lines += [f"sysctl -w {shlex.quote(f'{k}={v}')}" for k, v in values.items()]
    if profile.nofile is not None:
        value = "$(ulimit -Hn)" if profile.nofile == "hard" else str(profile.nofile)
        lines += ["# in the shell (or systemd LimitNOFILE=) that starts the server and the "
                  "load generator", f"ulimit -n {value}"]  # fmt: skip
    return lines
