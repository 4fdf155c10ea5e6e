"""What every package of the suite shares, and nothing else: it imports no other wsbench package.

    errors.py   WsbenchError, the one exception root: a one-line message and an exit status
    procs.py    child processes: spawn dying with the parent, wait for a ready line, stop
    schema.py   the results folder: file names, SCHEMA_VERSION, typed records, one reader/writer
    units.py    ns -> µs, the one rounding rule

Standard library and psutil only: `reports` reads results through it without Locust, gevent
or anything that starts a process at import.
"""
