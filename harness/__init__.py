"""What `wsbench run` and `wsbench sweep` are made of, each module one concern.

plan        points (a workload and a topology) and sweeps: validated parameters, ids, a matrix
topology    the parts of a point's topology as context managers: namespaces, counters,
            sampling, target, Locust; entered in order, stopped in reverse
procs       starting a target and Locust, waiting for ready, stopping without orphans
sampling    CPU, RSS, open files and sockets of the target and Locust processes, once a second
provenance  the machine, versions, commit, kernel settings and limits a run happened under
store       a run's folder: created, claimed on resume (file names and records: common/schema)
execute     one point from start to stored outcome; a sweep of points with resume and SLO stop
compression what a point's upgrades agreed to with --compression deflate (permessage-deflate)
idle        idle CPUs poll (a held wake-up latency request) while a pinned point runs

It must not import Locust (it runs Locust as a child process), scenarios or reports.
"""
