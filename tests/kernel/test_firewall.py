"""A stateful firewall in a kernel profile, for real: Debian's nft in the server namespace.

`firewall-full` holds more connections than its conntrack table has entries: the point fails,
saying the kernel's conntrack dropped the SYNs, and `firewall` (a roomy table) holds them all;
the host's nf_conntrack_max is back as it was afterwards. A per-source rate limit shows in its
own counter and explains the connects it delayed. Needs root, like every namespace test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from test_namespaces import nothing_left, point, wsbench  # noqa: F401 (a fixture)

from kernel import netns
from kernel.netns import missing_privileges
from kernel.profile import FIREWALL_COUNTERS, Firewall, ProfileError, load

CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
needs_root = pytest.mark.skipif(
    bool(missing_privileges()), reason=f"needs root for namespaces: {missing_privileges()}"
)
needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="needs Debian's nftables")


def test_the_firewall_profiles_extend_tuned_and_size_the_table() -> None:
    """`firewall` is tuned plus the rules and a roomy table; `firewall-full` a table of 1,024."""
    tuned, roomy, full = load("tuned"), load("firewall"), load("firewall-full")
    assert tuned.firewall is None
    assert roomy.firewall == full.firewall == Firewall()
    assert roomy.host["net.netfilter.nf_conntrack_max"] == "262144"
    assert full.host["net.netfilter.nf_conntrack_max"] == "1024"
    for key, value in tuned.server.items():
        assert full.server[key] == value
    assert full.server["net.netfilter.nf_conntrack_tcp_timeout_time_wait"] == "30"
    assert full.as_dict()["firewall"] == {"new_per_source_per_s": None, "new_burst": None}


@pytest.mark.parametrize(("body", "error"), [
    ("[firewall]\nrate = 5\n", "knows only new_per_source_per_s, new_burst, not rate"),
    ("[firewall]\nnew_per_source_per_s = 0\n", "whole number 1..1,000,000, got 0"),
    ("[firewall]\nnew_per_source_per_s = true\n", "got True"),
    ("[firewall]\nnew_per_source_per_s = 2.5\n", "got 2.5"),
    ("[firewall]\nnew_burst = 10\n", "new_burst needs firewall.new_per_source_per_s"),
    ("firewall = 3\n", "firewall"),
])  # fmt: skip
def test_a_bad_firewall_section_is_refused_naming_the_key(tmp_path: Path, body, error) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'description = "x"\n{body}')
    with pytest.raises(ProfileError, match=error.replace(".", r"\.").replace("(", r"\(")):
        load(str(path))


def test_an_extending_profile_keeps_the_base_rules_and_adds_a_limit(tmp_path: Path) -> None:
    path = tmp_path / "limited.toml"
    path.write_text('description = "x"\nextends = "firewall"\n'
                    "[firewall]\nnew_per_source_per_s = 50\n")  # fmt: skip
    limited = load(str(path))
    assert limited.firewall == Firewall(new_per_source_per_s=50)
    assert limited.host == load("firewall").host


@needs_root
@needs_nft
@pytest.mark.parametrize("firewall", [Firewall(), Firewall(new_per_source_per_s=100, new_burst=7)])
def test_the_rules_load_in_a_namespace_with_their_counters_at_zero(firewall: Firewall) -> None:
    """nft accepts the script as written, and its named counters read back, all zero."""
    ns = netns.Namespace("server")
    try:
        ns.run("nft", "-f", "-", stdin=firewall.ruleset(netns.SERVER_ADDRESS))
        listed = ns.run("nft", "list", "ruleset")
        assert "policy drop" in listed and "ct state established,related accept" in listed
        assert ("limit rate over 100/second burst 7 packets" in listed) == bool(
            firewall.new_per_source_per_s)
        assert netns.firewall_counters(ns) == dict.fromkeys(FIREWALL_COUNTERS.values(), 0)
    finally:
        ns.close()


@needs_root
@needs_nft
def test_a_full_conntrack_table_fails_the_point_naming_it_and_a_roomy_one_holds(
    tmp_path: Path, nothing_left  # noqa: F811 (the fixture)
) -> None:
    """1,100 connections against 1,024 entries: the point fails, the reason says conntrack's
    table was full; `firewall` holds all 1,100; the host's table size is restored.

    The connects past the table are still resending SYNs when the run ends (6 s), and past
    Locust's stop timeout (5 s more) their users are killed: they count as connections not
    held, not as nothing; those begun in the first second may reach the 10 s connect timeout
    first, and count as timed out."""
    before = CONNTRACK_MAX.read_text()
    run = tmp_path / "full"
    done = wsbench(
        "run", "--target", "raw", "--scenario", "hold", "--users", "1100",
        "--kernel-profile", "firewall-full,firewall", "--host-sysctls", "--duration", "6s",
        "--out", str(run),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert CONNTRACK_MAX.read_text() == before

    full = point(run, "firewall_full")
    assert full["result"]["status"] == "failed"
    reason = full["result"]["reason"]
    unheld = re.search(r"^([\d,]+) of 1,100 connections held failed ", reason)
    assert unheld and int(unheld.group(1).replace(",", "")) >= 1100 - 1024, reason
    assert "still opening at the end" in reason or "most often timeout: tcp connect" in reason
    assert "server ConntrackDrop +" in reason and "conntrack's table was full" in reason
    server = full["kernel"]["server"]
    assert server["ConntrackDrop"] > 0
    # Established entries may not be evicted: the table stops at its size.
    after = full["kernel"]["snapshots"]["server"]["after"]["gauges"]["conntrack_entries"]
    assert after <= 1024
    assert full["kernel"]["client"]["TCPSynRetrans"] > 0
    assert server["FirewallPolicyDrop"] == server["FirewallRateLimitDrop"] == 0

    roomy = point(run, "firewall")
    assert roomy["result"]["status"] == "ok", roomy["result"]["reason"]
    assert roomy["result"]["summary"]["main"]["successes"] == 1100
    assert roomy["kernel"]["server"]["ConntrackDrop"] == 0
    meta = json.loads((run / "meta.json").read_text())
    in_force = meta["kernel_profiles"]["firewall-full"]["in_force"]
    assert in_force["host"]["net.netfilter.nf_conntrack_max"] == "1024"
    assert "policy drop" in in_force["firewall"]["ruleset"]
    assert in_force["server"]["net.netfilter.nf_conntrack_max"] == "1024"


@needs_root
@needs_nft
def test_a_per_source_rate_limit_delays_connects_and_is_named(
    tmp_path: Path, nothing_left  # noqa: F811 (the fixture)
) -> None:
    """200 connects at once from one address against 50 per second: the firewall drops the
    rest, clients retry after 1 s, and every connect over 1 s is put down to the limit."""
    profile = tmp_path / "limited.toml"
    profile.write_text('description = "tuned, 50 new connections/s per source"\n'
                       'extends = "tuned"\n[topology]\nclient_addresses = 1\n'
                       "[firewall]\nnew_per_source_per_s = 50\nnew_burst = 50\n")  # fmt: skip
    run = tmp_path / "limited"
    done = wsbench(
        "run", "--target", "raw", "--scenario", "hold", "--users", "200", "--spawn-rate",
        "1000", "--kernel-profile", str(profile), "--duration", "8s", "--out", str(run),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (pdir,) = (run / "points").iterdir()  # named after the profile file's path
    limited = point(run, pdir.name.rsplit("-", 1)[1])
    assert limited["kernel"]["server"]["FirewallRateLimitDrop"] > 0
    stalls = limited["result"]["summary"]["kernel"]["stalls"]
    assert stalls and sum(s["connects"] for s in stalls if s["name"] == "tcp connect") > 0
    assert all("per-source rate limit" in s["cause"] for s in stalls), stalls
    assert any("FirewallRateLimitDrop" in w for w in limited["result"]["warnings"])


@needs_root
def test_a_firewall_without_nft_is_one_line_naming_the_package(tmp_path: Path) -> None:
    """Every command on PATH but nft: the run refuses before building anything."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else []:
            if tool.name != "nft" and not (bare / tool.name).exists():
                (bare / tool.name).symlink_to(tool)
    done = wsbench("run", "--target", "raw", "--scenario", "hold", "--users", "1",
                   "--kernel-profile", "firewall", "--host-sysctls", "--out",
                   str(tmp_path / "r"), env={**os.environ, "PATH": str(bare)})  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "nft" in lines[0] and "apt-get install nftables" in lines[0]
