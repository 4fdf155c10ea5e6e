"""`wsbench kernel list` and `wsbench kernel show NAME`: profiles as a reader wants them."""

from __future__ import annotations

from kernel import inside, netns
from kernel.profile import HOST_PROFILE, Profile, load, names, sysctl_lines


def list_lines() -> list[str]:
    """One block per profile: its name and what it is for."""
    lines = [f"{HOST_PROFILE:<14} the host's own settings, no namespaces (the default)"]
    for name in names():
        profile = load(name)
        lines.append(f"{name:<14} {profile.description}")
    return lines


def _host_value(key: str) -> str:
    try:
        return inside.read(key)
    except OSError:
        return "(absent)"


def diff_rows(profile: Profile) -> list[tuple[str, str, str, str, str]]:
    """(side, key, this host now, a fresh namespace, the profile) for every key it touches,
    and for the recorded keys a fresh namespace has, so `default` shows what it means."""
    keys = {("host", k) for k in profile.host}
    for side in ("server", "client"):
        keys |= {(side, k) for k in profile.sysctls(side)}
        keys |= {(side, k) for k in netns.RECORDED_SYSCTLS}
    fresh = netns.fresh_values(sorted({k for side, k in keys if side != "host"})) or {}
    rows = []
    order = ("server", "client", "host")
    for side, key in sorted(keys, key=lambda sk: (order.index(sk[0]), sk[1])):
        unknown = "?" if side != "host" else "-"
        wanted = profile.sysctls(side).get(key, "(kept)")
        rows.append((side, key, _host_value(key), fresh.get(key, unknown), wanted))
    return rows


def show_lines(name: str) -> list[str]:
    profile = load(name)
    lines = [f"{profile.name}: {profile.description}", f"file: {profile.path}", ""]
    lines += profile.path.read_text().rstrip().splitlines()
    rows = diff_rows(profile)
    header = ("side", "sysctl", "this host now", "fresh namespace", "profile")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines += ["", "Against this host (\"*\": the profile changes what this host has now):"]
    for row in [header, *rows]:
        mark = "*" if row is not header and row[4] not in ("(kept)", row[2]) else " "
        lines.append(mark + " " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not any(r[3] != "?" for r in rows):
        lines.append("(fresh-namespace values need root: CAP_NET_ADMIN and CAP_SYS_ADMIN)")
    commands = sysctl_lines(profile)
    lines += ["", "To apply it on real machines (as root; not persistent across reboots):"]
    lines += commands or ["# nothing to set: this profile keeps the kernel's defaults"]
    return lines
