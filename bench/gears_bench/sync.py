"""S1 calls on behalf of the main thread: the round trip of a no-op call (RG.TESTSYNC, the test
hook that runs a script on its home worker while the main thread waits with the lock held),
timed on the server (SLOWLOG) so that the client's round trip is not counted."""

from .common import as_str, expect, expect_ok, log, median
from .servers import Server


def server_durations(c, n, *command):
    """Runs `command` n times; returns each call's duration on the server (SLOWLOG, in us), so
    the client's round trip is not counted."""
    c.config_set("slowlog-max-len", n)
    c.config_set("slowlog-log-slower-than", 0)
    c.execute_command("SLOWLOG", "RESET")
    for _ in range(n):
        c.execute_command(*command)
    entries = c.execute_command("SLOWLOG", "GET", n)
    c.config_set("slowlog-log-slower-than", 10000)
    name = command[0].lower()
    return [e[2] for e in entries if as_str(e[3][0]).lower() == name]


def s1(workdir, module, cfg, raw):
    n = cfg["s1_calls"]
    with Server(workdir, "sync", module, ("TestHooks", "1")) as srv:
        c = srv.client()
        for script in ("", "pass"):
            expect_ok(c.execute_command("RG.TESTSYNC", script), f"RG.TESTSYNC {script!r}")
        server_durations(c, n // 10, "RG.TESTSYNC", "")  # warm-up
        # The round trip alone (an empty call runs no Python), then a no-op script body on
        # behalf of the main thread, and the same body as an ordinary RG.PYEXECUTE.
        sync = server_durations(c, n, "RG.TESTSYNC", "")
        sync_body = server_durations(c, n, "RG.TESTSYNC", "pass")
        body = server_durations(c, n, "RG.PYEXECUTE", "pass")
        srv.check_alive("after S1")
        c.close()
    expect(len(sync) >= n // 2, f"S1: only {len(sync)} SLOWLOG entries for {n} calls")
    raw["s1"] = {"calls": n, "sync_us_median": median(sync), "sync_us_p99": sorted(sync)[int(len(sync) * 0.99) - 1],
                 "sync_body_us_median": median(sync_body), "pyexecute_us_median": median(body)}
    log(f"S1: no-op call on behalf of the main thread: median {raw['s1']['sync_us_median']:.1f} us, "
        f"p99 {raw['s1']['sync_us_p99']:.1f} us; a 'pass' body: {raw['s1']['sync_body_us_median']:.1f} us on behalf "
        f"of the main thread, {raw['s1']['pyexecute_us_median']:.1f} us as RG.PYEXECUTE")
