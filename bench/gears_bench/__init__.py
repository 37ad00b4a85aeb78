"""The benchmark behind `make bench` (bench/run.py is its command line), split by job:

    common.py         paths, run sizes, timeouts, shared scripts and checks, redis-benchmark
    servers.py        redis-servers (on tests/harness.py) and helper processes, all killed at exit
    pinger.py         the PING-latency probe (P4, R4)
    calls.py          P1 per-call overhead, P5 footprint, P6 interpreter
    scan.py           P2 scan throughput, P4 latency impact (one keyspace of words)
    parallel.py       P3 parallelism
    sync.py           S1 calls on behalf of the main thread
    events.py         writers, subscriber and consumer processes of the registration workloads
    registrations.py  R1-R4 registrations against their client-side anchors
    flood.py          R5 the flood
    asyncsteps.py     A1-A2 asynchronous steps
    cluster.py        C1-C2 a 3-master cluster (tests/cluster.py) against one server
    machine.py        machine and versions
    rows.py           the figures (one row each) from the raw numbers
    report.py         the table, summary.md, latest.json; chart.py: chart.svg
    runner.py         one run: the selection, the workloads in order, the results
"""
