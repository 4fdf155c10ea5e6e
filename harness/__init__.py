"""What `wsbench run` and `wsbench sweep` are made of, each module one concern.

plan        points and sweeps: validated parameters, ids, expansion of a matrix
procs       starting a target and Locust, waiting for ready, stopping without orphans
sampling    CPU, RSS, open files and sockets of the target and Locust processes, once a second
provenance  the machine, versions, commit, kernel settings and limits a run happened under
store       the results folder: meta.json, one folder per point, written as soon as it exists
execute     one point from start to stored outcome; a sweep of points with resume and SLO stop
"""
