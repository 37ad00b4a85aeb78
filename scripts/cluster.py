#!/usr/bin/env python3
"""A local Redis Cluster with the module on every node, in the foreground (`make cluster`).

    python3 scripts/cluster.py [--port 30001] [--masters 3] [--replicas 1] [--node-timeout 5000]
                               [--module path/to/librustgears.so] [module args ...]

Nodes listen on 127.0.0.1, ports --port, --port + 1, ... (masters first, then replicas; the cluster
bus uses port + 10000). Each runs in its own temporary directory (nodes.conf, redis.log) with
--save '' --appendonly no. Ctrl-C (or SIGTERM) stops every node and removes the directories.

Module: $RUSTGEARS_MODULE, else $CARGO_TARGET_DIR/release/librustgears.so (CARGO_TARGET_DIR
defaults to ~/.cache/rustgears/target), or --module PATH. Trailing arguments are module load
arguments (e.g. ExecutionThreads 2).

Cluster mode is in progress: today every shard runs its executions on its own keys only.

Exit status: 0 after Ctrl-C, 1 if the cluster could not start, 2 on bad usage.
"""

import argparse
import os
import signal
import sys
import time

# The cluster harness of the test suite (which takes the launcher pieces from harness.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from cluster import MAX_PORT, NODE_TIMEOUT_MS, Cluster, ClusterError  # noqa: E402
from harness import ServerStartError, module_path  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT") or 30001),
                    help="first port (default $CLUSTER_PORT or 30001)")
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=1, help="replicas per master")
    ap.add_argument("--node-timeout", type=int, default=NODE_TIMEOUT_MS, help="cluster-node-timeout in ms")
    ap.add_argument("--module", default=module_path())
    ap.add_argument("module_args", nargs="*")
    args = ap.parse_args(argv)
    total = args.masters * (1 + args.replicas)
    if args.masters < 3:
        ap.error("a Redis Cluster needs at least 3 masters")
    if args.replicas < 0:
        ap.error("--replicas must be >= 0")
    if args.port < 1 or args.port + total - 1 > MAX_PORT:
        ap.error(f"ports {args.port}-{args.port + total - 1}: the last one must be at most {MAX_PORT} "
                 f"(the cluster bus uses port + 10000)")
    if not os.path.isfile(args.module):
        ap.error(f"module not found: {args.module} (make build, or --module / RUSTGEARS_MODULE)")
    return args, total


def interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(argv):
    args, total = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # stops the cluster like Ctrl-C does
    cluster = Cluster(args.masters, args.replicas, args.module_args, module=args.module,
                      ports=list(range(args.port, args.port + total)), node_timeout=args.node_timeout)
    print(f"starting {args.masters} masters + {args.masters * args.replicas} replicas on ports "
          f"{args.port}-{args.port + total - 1} with {args.module}", flush=True)
    try:
        cluster.start()
    except KeyboardInterrupt:
        print("interrupted; stopped", flush=True)
        return 0
    except (ClusterError, ServerStartError, OSError) as e:
        print(f"cluster did not start: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        print(cluster.describe())
        print(f"\ncluster_state:ok. Node directories (nodes.conf, redis.log): {cluster.root}")
        print("Cluster mode is in progress: each shard runs executions on its own keys only.\n")
        print(f"    redis-cli -c -p {args.port}")
        print(f"    redis-cli -c -p {args.port} RG.PYEXECUTE \"GB().map(lambda r: r['key']).run()\"\n")
        print("Ctrl-C stops the cluster.", flush=True)
        reported = set()
        while True:
            time.sleep(1)
            for n in cluster.nodes:
                if n.port not in reported and not n.alive():
                    reported.add(n.port)
                    print(f"node {n.addr} exited with code {n.proc.returncode}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    print("\ncluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
