#!/usr/bin/env python3
"""rustgears benchmark harness (`make bench`).

Starts its own redis-server processes (127.0.0.1, free ports, --save '' --appendonly no) with
the module loaded, measures the workloads P1-P6, S1, the registration workloads R1-R5, the
asynchronous-step workloads A1-A2 and the cluster workloads C1-C2 side by side with their anchors
(Lua, a client-side redis-py script, CPython, a server without the module, the same work without
asynchrony, one server instead of a cluster), and writes

    bench/results/latest.json   every raw number (per run), parameters, machine, versions
    bench/results/summary.md    machine, versions, date and the table of figures
    bench/results/chart.svg     the figures against their targets and anchors

The table is printed to stdout too. The method is documented in docs/performance.md.

    python3 bench/run.py            full run (1,000,000 keys, 3-5 runs per figure, the flood R5)
    python3 bench/run.py --quick    smoke run (100,000 keys, 1-2 runs per figure, no R5)
    python3 bench/run.py --quick --only r1,r2,r3,r4 [--flood]   a subset of the workloads
    python3 bench/run.py --quick --only a1,a2                   the asynchronous-step workloads
    python3 bench/run.py --only c1,c2 [--cluster-keys N]        cluster mode (3 masters vs 1 server)

Module: $RUSTGEARS_MODULE, else $CARGO_TARGET_DIR/release/librustgears.so (CARGO_TARGET_DIR
defaults to ~/.cache/rustgears/target), or --module PATH.

Exit status: 0 when every workload ran and its results were correct (targets met or not),
1 when a workload failed (error, wrong result, server crash), 2 on bad usage.

This file is the command line only; the work is in the package gears_bench/ (servers, one
module per workload group, report). The helper processes the workloads start (pinger, writers,
subscriber, consumer) are this script again, with a hidden flag.
"""

import argparse
import sys

from gears_bench.common import DEFAULT_OUT
from gears_bench.events import consumer_main, subscriber_main, writer_main
from gears_bench.pinger import pinger_main
from gears_bench.runner import run


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (100k keys, fewer runs)")
    ap.add_argument("--module", help="path to librustgears.so")
    ap.add_argument("--keys", type=int, help="override the keyspace size")
    ap.add_argument("--runs", type=int, help="override the number of runs per heavy figure")
    ap.add_argument("--cluster-keys", type=int, help="override the keys of C1 and the records of C2")
    ap.add_argument("--out", default=DEFAULT_OUT, help="results directory (default bench/results)")
    ap.add_argument("--only", help="comma-separated workloads to run (e.g. p1,r1,r2); default: all")
    ap.add_argument("--flood", action="store_true", help="run R5 (the flood) in a --quick run too")
    ap.add_argument("--_pinger", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_writer", help=argparse.SUPPRESS)
    ap.add_argument("--_subscriber", help=argparse.SUPPRESS)
    ap.add_argument("--_consumer", type=int, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for flag, helper in ((args._pinger, pinger_main), (args._writer, writer_main),
                         (args._subscriber, subscriber_main), (args._consumer, consumer_main)):
        if flag:
            helper(flag)
            return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
