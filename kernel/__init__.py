"""Kernel settings as data, applied where they cannot hurt the host: in network namespaces.

kernel/ owns the kernel profiles (profiles/*.toml and their loader), the namespaces a point runs
in (netns.py: a server namespace, client namespaces on a bridge in 198.18.0.0/15), host-wide
sysctls saved and restored around a run (hostsysctl.py), and the kernel counters read before and
after a point with what their changes mean (counters.py). It imports only `common`: never the
targets, the scenarios, the harness, the reports or Locust.
"""
