"""kernel.profile: the shipped profiles load and mean what they say; bad profiles are refused.

Bad profiles are written to tmp_path and loaded by path, as `--kernel-profile FILE.toml` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kernel import profile
from kernel.profile import ProfileError, is_global, load, sysctl_lines

SHIPPED = {"default", "tuned", "constrained", "tuned-host", "firewall", "firewall-full"}
GLOBAL_KEYS = ("net.core.netdev_max_backlog", "fs.file-max", "net.ipv4.tcp_mem")

MakeProfile = Callable[[str], str]


@pytest.fixture
def write(tmp_path: Path) -> MakeProfile:
    """Write TOML text to a fresh file and return its path as --kernel-profile takes it."""
    count = iter(range(1000))

    def make(text: str, name: str | None = None) -> str:
        path = tmp_path / f"{name or f'p{next(count)}'}.toml"
        path.write_text(text)
        return str(path)

    return make


def _with_description(body: str) -> str:
    return f'description = "a test profile"\n{body}'


def test_shipped_profiles_are_the_documented_ones() -> None:
    """`kernel list` offers exactly the shipped files, the two firewall profiles among them."""
    assert set(profile.names()) == SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_profile_loads(name: str) -> None:
    """Every shipped profile loads, with its file's stem as its name and a description."""
    loaded = load(name)
    assert loaded.name == name
    assert loaded.path == profile.PROFILE_DIR / f"{name}.toml"
    assert loaded.description.strip()
    fixed = loaded.client_addresses
    assert fixed is None or 1 <= fixed <= profile.MAX_CLIENT_ADDRESSES  # None: "auto"


def test_host_is_not_a_profile_file() -> None:
    """`host` means no namespaces, so loading it as a file is an error, not a lookup."""
    with pytest.raises(ProfileError, match="no namespaces"):
        load("host")


def test_tuned_raises_the_queues_and_widens_the_port_range() -> None:
    """tuned: big accept and SYN queues, reuse of TIME_WAIT ports, a wide range, nofile hard."""
    tuned = load("tuned")
    assert int(tuned.server["net.core.somaxconn"]) >= 4096
    assert int(tuned.server["net.ipv4.tcp_max_syn_backlog"]) >= 4096
    assert tuned.server["net.ipv4.tcp_syncookies"] == "1"
    assert tuned.client["net.ipv4.tcp_tw_reuse"] == "1"
    low, high = tuned.port_range()  # type: ignore[misc]
    assert high - low + 1 > 60000
    assert tuned.nofile == "hard"
    assert tuned.host == {}


def test_constrained_has_no_cookies_and_a_narrow_port_range() -> None:
    """constrained: syncookies off, a tiny accept queue and fewer than 2,000 ephemeral ports."""
    constrained = load("constrained")
    assert constrained.server["net.ipv4.tcp_syncookies"] == "0"
    assert int(constrained.server["net.core.somaxconn"]) < 128
    low, high = constrained.port_range()  # type: ignore[misc]
    assert high - low + 1 < 2000
    assert constrained.host == {}


def test_default_sets_nothing() -> None:
    """default is the fresh-namespace reference: no sysctls anywhere, no limit."""
    default = load("default")
    assert (default.server, default.client, default.host) == ({}, {}, {})
    assert default.nofile is None
    assert default.port_range() is None
    assert sysctl_lines(default) == []


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("key", GLOBAL_KEYS)
def test_global_key_outside_host_table_is_refused(write: MakeProfile, side: str, key: str) -> None:
    """A host-wide sysctl under [server.sysctls] or [client.sysctls] names itself and the fix."""
    path = write(_with_description(f'[{side}.sysctls]\n"{key}" = 100\n'))
    with pytest.raises(ProfileError) as info:
        load(path)
    message = str(info.value)
    assert key in message
    assert "[host.sysctls]" in message
    assert "\n" not in message


@pytest.mark.parametrize("key", GLOBAL_KEYS)
def test_global_key_under_host_table_is_accepted(write: MakeProfile, key: str) -> None:
    """The same keys load under [host.sysctls], and only there."""
    assert is_global(key)
    loaded = load(write(_with_description(f'[host.sysctls]\n"{key}" = "1 2 3"\n')))
    assert loaded.host == {key: "1 2 3"}


def test_per_namespace_key_under_host_table_is_refused(write: MakeProfile) -> None:
    """somaxconn under [host.sysctls] is an error pointing at [server.sysctls]."""
    path = write(_with_description('[host.sysctls]\n"net.core.somaxconn" = 1024\n'))
    assert not is_global("net.core.somaxconn")
    with pytest.raises(ProfileError, match=r"net\.core\.somaxconn.*\[server\.sysctls\]"):
        load(path)


def test_unknown_top_level_key_is_named(write: MakeProfile) -> None:
    """A misspelt table (`[servr]`) is an error naming it rather than silently ignored."""
    path = write(_with_description('[servr.sysctls]\n"net.core.somaxconn" = 1024\n'))
    with pytest.raises(ProfileError, match="unknown keys.*servr"):
        load(path)


@pytest.mark.parametrize("text", ["", 'description = "   "\n', "description = 3\n"])
def test_missing_description_is_refused(write: MakeProfile, text: str) -> None:
    """A profile must say what it is for."""
    with pytest.raises(ProfileError, match="description"):
        load(write(text + '[server.sysctls]\n"net.core.somaxconn" = 1024\n'))


@pytest.mark.parametrize("value", ["10", '"soft"', "true", "1.5", "-1"])
def test_bad_nofile_is_refused(write: MakeProfile, value: str) -> None:
    """rlimits.nofile is a number of at least 64 or "hard", nothing else."""
    with pytest.raises(ProfileError, match="nofile"):
        load(write(_with_description(f"[rlimits]\nnofile = {value}\n")))


@pytest.mark.parametrize("value", ["64", '"hard"'])
def test_good_nofile_loads(write: MakeProfile, value: str) -> None:
    """The smallest number and "hard" are both accepted."""
    loaded = load(write(_with_description(f"[rlimits]\nnofile = {value}\n")))
    assert loaded.nofile == (64 if value == "64" else "hard")


@pytest.mark.parametrize("value", ["0", "251", "true", '"2"'])
def test_bad_client_addresses_is_refused(write: MakeProfile, value: str) -> None:
    """topology.client_addresses is 1..250 (198.18.<host>.1 .. .250)."""
    with pytest.raises(ProfileError, match="client_addresses"):
        load(write(_with_description(f"[topology]\nclient_addresses = {value}\n")))


@pytest.mark.parametrize(
    "value",
    [
        "2000 1000",
        "0 1000",
        "1024 70000",
        "abc",
        "1024",
        "1 2 3",
    ],
)
def test_malformed_port_range_is_refused(write: MakeProfile, value: str) -> None:
    """ip_local_port_range must be two numbers low <= high within 1..65535: a ProfileError."""
    key = '"net.ipv4.ip_local_port_range"'
    path = write(_with_description(f'[client.sysctls]\n{key} = "{value}"\n'))
    with pytest.raises(ProfileError, match="ip_local_port_range"):
        load(path)


def test_port_range_as_a_list_is_folded(write: MakeProfile) -> None:
    """A TOML list is written space-separated, as the kernel prints it."""
    loaded = load(write(_with_description(
        '[client.sysctls]\n"net.ipv4.ip_local_port_range" = [2000, 3000]\n'
    )))  # fmt: skip
    assert loaded.client["net.ipv4.ip_local_port_range"] == "2000 3000"
    assert loaded.port_range() == (2000, 3000)


def test_tuned_host_extends_tuned() -> None:
    """tuned-host has tuned's server and client sysctls and limit, plus its own host ones."""
    tuned, tuned_host = load("tuned"), load("tuned-host")
    assert tuned_host.extends == "tuned"
    assert tuned_host.server == tuned.server
    assert tuned_host.client == tuned.client
    assert tuned_host.nofile == tuned.nofile
    assert tuned_host.host
    assert all(is_global(key) for key in tuned_host.host)
    assert int(tuned_host.host["net.core.netdev_max_backlog"]) >= 4096


def test_extends_overrides_key_by_key(write: MakeProfile) -> None:
    """A profile extending tuned replaces only the keys it names; the rest are inherited."""
    path = write(_with_description(
        'extends = "tuned"\n[server.sysctls]\n"net.core.somaxconn" = 1024\n'
        "[topology]\nclient_addresses = 3\n"
    ))  # fmt: skip
    loaded, tuned = load(path), load("tuned")
    assert loaded.server == {**tuned.server, "net.core.somaxconn": "1024"}
    assert loaded.client == tuned.client
    assert loaded.client_addresses == 3


@pytest.mark.parametrize("how", ["stem", "path"])
def test_extending_itself_is_an_error(tmp_path: Path, how: str) -> None:
    """A file extending itself (by name or by path) is a ProfileError, not a RecursionError."""
    path = tmp_path / "loop.toml"
    target = "loop" if how == "stem" else str(path)
    path.write_text(_with_description(f'extends = "{target}"\n'))
    with pytest.raises(ProfileError, match="extends"):
        load(str(path))


def test_extends_cycle_of_two_files_is_an_error(tmp_path: Path) -> None:
    """a extends b, b extends a: refused with one line."""
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(_with_description(f'extends = "{b}"\n'))
    b.write_text(_with_description(f'extends = "{a}"\n'))
    with pytest.raises(ProfileError, match="extends"):
        load(str(a))


def test_extends_unknown_profile_is_an_error(write: MakeProfile) -> None:
    """Extending a profile that does not exist says so."""
    with pytest.raises(ProfileError, match="unknown kernel profile 'nope'"):
        load(write(_with_description('extends = "nope"\n')))


def test_sysctl_lines_quote_values_with_spaces() -> None:
    """A value with spaces is one shell word; a plain number is not quoted."""
    lines = sysctl_lines(load("tuned"))
    assert "sysctl -w 'net.ipv4.ip_local_port_range=1024 65535'" in lines
    assert "sysctl -w 'net.ipv4.tcp_rmem=4096 16384 16777216'" in lines
    assert "sysctl -w net.core.somaxconn=65535" in lines
    assert "ulimit -n $(ulimit -Hn)" in lines


def test_sysctl_lines_group_server_client_host() -> None:
    """Server lines, then client lines, then host-wide lines, each under its own comment."""
    loaded = load("tuned-host")
    lines = sysctl_lines(loaded)
    comments = [i for i, line in enumerate(lines) if line.startswith("# ")]
    ends = [*comments[1:], None]
    groups = [lines[start + 1 : end] for start, end in zip(comments, ends, strict=True)]
    assert "server" in lines[comments[0]]
    assert "load-generating" in lines[comments[1]]
    assert "host-wide" in lines[comments[2]]
    for group, side in zip(groups, ("server", "client", "host"), strict=False):
        keys = [line.removeprefix("sysctl -w ").strip("'").split("=")[0] for line in group]
        assert keys == list(loaded.sysctls(side))


def test_sysctl_lines_of_numeric_nofile(write: MakeProfile) -> None:
    """A numeric nofile becomes `ulimit -n N`; sides with nothing set get no comment."""
    loaded = load(write(_with_description(
        '[host.sysctls]\n"fs.file-max" = 2000000\n[rlimits]\nnofile = 20000\n'
    )))  # fmt: skip
    lines = sysctl_lines(loaded)
    assert lines[1:2] == ["sysctl -w fs.file-max=2000000"]
    assert lines[-1] == "ulimit -n 20000"
    assert not any("server machine" in line or "load-generating" in line for line in lines)
