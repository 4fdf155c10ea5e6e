"""harness.plan with kernel profiles: processes and source addresses sized, bad profiles refused.

Pure planning: no process is started (check_kernel is only called where it fails before its
privilege probe).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness import plan
from harness.plan import PlanError, make_point, sized
from kernel.profile import load

OPTION = plan.SOURCE_IPS_OPTION
ROOMY_LIMIT = 1 << 20  # so that a test about addresses does not also raise processes


def _source_ips(point: plan.Point) -> list[str]:
    options = list(point.workload.options)
    assert options.count(OPTION) == 1, options
    return options[options.index(OPTION) + 1].split(",")


def _per_address(low: int, high: int) -> int:
    return int((high - low + 1) * plan.PORT_RANGE_USE)


def test_tuned_100k_users_get_source_addresses_from_the_port_range() -> None:
    """1024-65535 used to PORT_RANGE_USE (half: 32,255 per address): 100,000 users need 4."""
    point, notes = sized(make_point("raw", "echo", 100_000, kernel_profile="tuned"), ROOMY_LIMIT)
    need = math.ceil(100_000 / _per_address(1024, 65535))
    assert point.topology.client_addresses == need == 4
    assert _source_ips(point) == [f"198.18.1.{n}" for n in range(1, need + 1)]
    assert any(f"{need} source addresses" in note and "1024 65535" in note for note in notes)


def test_few_users_get_no_source_option() -> None:
    """Below the port range's share, a single address is used and no option is added."""
    point, notes = sized(make_point("raw", "echo", 1000, kernel_profile="tuned"), ROOMY_LIMIT)
    assert point.topology.client_addresses == 1
    assert OPTION not in point.workload.options
    assert notes == []


@pytest.fixture
def narrow(tmp_path: Path) -> str:
    """A profile with constrained's 1,000 ports and automatic source addresses."""
    path = tmp_path / "narrow-auto.toml"
    path.write_text('description = "x"\n[client.sysctls]\n'
                    '"net.ipv4.ip_local_port_range" = "50000 50999"\n')  # fmt: skip
    return str(path)


def test_narrow_port_range_needs_ten_addresses_for_5000_users(narrow: str) -> None:
    """1,000 ports used to half hold 500 connections: 5,000 users need 10 addresses."""
    point, notes = sized(make_point("raw", "echo", 5000, kernel_profile=narrow), ROOMY_LIMIT)
    assert point.topology.client_addresses == math.ceil(5000 / _per_address(50000, 50999)) == 10
    assert _source_ips(point) == [f"198.18.1.{n}" for n in range(1, 11)]
    assert any("10 source addresses" in note and "50000 50999" in note for note in notes)


def test_constrained_keeps_its_one_address_and_says_ports_may_run_out() -> None:
    """constrained fixes client_addresses = 1: its narrow range is meant to run out."""
    point, notes = sized(make_point("raw", "connect", 5000, kernel_profile="constrained"),
                         ROOMY_LIMIT)  # fmt: skip
    assert point.topology.client_addresses == 1
    assert plan.SOURCE_IPS_OPTION not in point.workload.options
    assert any("fixes 1 source address" in note and "run out of ports" in note for note in notes)


def test_host_profile_adds_loopback_addresses_above_the_host_range() -> None:
    """Without namespaces, more users than PORT_RANGE_USE x the host's range get 127.0.0.x."""
    low, high = plan.port_range_of(None)
    users = int((high - low + 1) * plan.PORT_RANGE_USE) + 1
    point, notes = sized(make_point("raw", "echo", users), ROOMY_LIMIT)
    assert point.topology.client_addresses == 2
    assert _source_ips(point) == ["127.0.0.1", "127.0.0.2"]
    assert any("source addresses" in note for note in notes)


def test_given_source_ips_are_kept_as_they_are() -> None:
    """A user's own --ws-source-ips is not replaced or doubled, and the notes say so."""
    for given in [(OPTION, "10.9.9.9"), (f"{OPTION}=10.9.9.9",)]:
        start = make_point("raw", "echo", 100_000, kernel_profile="tuned", options=given)
        point, notes = sized(start, ROOMY_LIMIT)
        assert point.workload.options == given
        assert any(OPTION in note and "as it is" in note for note in notes)


def test_external_url_gets_no_source_addresses() -> None:
    """A ws:// target's routes are the user's business: no addresses, no target processes."""
    start = make_point("ws://127.0.0.1:9/", "echo", 100_000)
    point, notes = sized(start, 20_000)
    assert point.workload.options == ()
    assert point.topology.client_addresses == start.topology.client_addresses
    assert point.topology.target_processes == 1
    assert point.topology.processes == 6
    assert not any("source address" in note for note in notes)


def test_fd_limit_splits_users_over_processes() -> None:
    """100,000 users under 20,000 open files: 6 Locust and 6 target processes, both noted."""
    point, notes = sized(make_point("raw", "echo", 100_000, kernel_profile="tuned"), 20_000)
    assert point.topology.processes == 6 == math.ceil(100_000 / (20_000 - plan.FD_HEADROOM))
    assert point.topology.target_processes == 6
    assert any("6 Locust processes" in note and "20000" in note for note in notes)
    assert any("SO_REUSEPORT" in note for note in notes)


def test_profile_nofile_is_the_limit_used(tmp_path: Path) -> None:
    """A profile's numeric rlimits.nofile sizes the processes when no limit is passed."""
    path = tmp_path / "small.toml"
    path.write_text('description = "few files"\n[rlimits]\nnofile = 5000\n')
    point, notes = sized(make_point("raw", "echo", 10_000, kernel_profile=str(path)))
    assert point.topology.processes == math.ceil(10_000 / (5000 - plan.FD_HEADROOM)) == 3
    assert any("open-file limit of 5000" in note for note in notes)


def test_client_hosts_split_processes_and_addresses_over_worker_hosts() -> None:
    """With 3 client hosts, host 0 is the master: processes and addresses go to hosts 1 and 2."""
    start = make_point("raw", "echo", 50_000, kernel_profile="tuned", client_hosts=3)
    point, notes = sized(start, 20_000)  # 50,000 / 19,500 -> 3 processes, 2 per worker host
    assert point.topology.processes == 4
    assert point.topology.processes % 2 == 0
    assert any("master" in note for note in notes)
    assert _source_ips(point) == ["198.18.2.1", "198.18.3.1"]
    assert point.topology.load_hosts() == [1, 2]


def test_client_hosts_share_the_users_when_sizing_addresses(narrow: str) -> None:
    """Each worker host carries half the users: 1,000 ports, 5,000 users -> 5 addresses each."""
    start = make_point("raw", "echo", 5000, kernel_profile=narrow, client_hosts=3)
    point, _ = sized(start, ROOMY_LIMIT)
    assert point.topology.client_addresses == math.ceil(2500 / _per_address(50000, 50999)) == 5
    ips = _source_ips(point)
    assert ips == [f"198.18.{h}.{n}" for h in (2, 3) for n in range(1, 6)]
    assert not any(ip.startswith("198.18.1.") for ip in ips)


def test_too_many_addresses_is_a_plan_error(tmp_path: Path) -> None:
    """A port range too narrow for the users even with 250 addresses: widen it, says the error."""
    path = tmp_path / "narrow.toml"
    path.write_text('description = "x"\n[client.sysctls]\n'
                    '"net.ipv4.ip_local_port_range" = "50000 50009"\n')  # fmt: skip
    with pytest.raises(PlanError, match="widen the range"):
        sized(make_point("raw", "echo", 5000, kernel_profile=str(path)), ROOMY_LIMIT)


def test_port_range_of_a_silent_profile_is_a_fresh_namespace() -> None:
    """default sets no range: planning assumes the kernel's fresh-namespace range."""
    assert plan.port_range_of(load("default")) == plan.FRESH_PORT_RANGE
    assert plan.port_range_of(load("tuned")) == (1024, 65535)


def test_check_kernel_unknown_profile() -> None:
    """An unknown profile name is a PlanError listing the choices."""
    with pytest.raises(PlanError, match="unknown kernel profile 'nope'.*tuned"):
        plan.check_kernel(make_point("raw", "echo", 1, kernel_profile="nope").topology)


def test_check_kernel_host_profile_with_client_hosts() -> None:
    """Client hosts are namespaces: with the host profile they are refused."""
    with pytest.raises(PlanError, match="--client-hosts needs a kernel profile"):
        plan.check_kernel(make_point("raw", "echo", 1, client_hosts=2).topology)


def test_check_kernel_nofile_above_hard_limit(tmp_path: Path) -> None:
    """A profile asking for more open files than the hard limit cannot run here."""
    nofile = max(10_000_000, plan.fd_limit() + 1)
    path = tmp_path / "greedy.toml"
    path.write_text(f'description = "more files than allowed"\n[rlimits]\nnofile = {nofile}\n')
    with pytest.raises(PlanError, match=f"{nofile} open files.*hard limit"):
        plan.check_kernel(make_point("raw", "echo", 1, kernel_profile=str(path)).topology)


def test_check_kernel_host_sysctls_needs_the_flag() -> None:
    """tuned-host without host_sysctls is refused, naming its host-wide keys."""
    with pytest.raises(PlanError, match="netdev_max_backlog.*--host-sysctls"):
        plan.check_kernel(make_point("raw", "echo", 1, kernel_profile="tuned-host").topology)
