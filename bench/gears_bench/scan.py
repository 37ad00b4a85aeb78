"""P2 scan throughput and P4 latency impact, both over one keyspace of words: GB().count() and
GB().countby() against a client-side word count (redis-py) and a Lua EVAL doing the same, and
the PING latency other clients see while each of them runs."""

import ast
import collections
import random
import time

from .common import ValidationError, as_str, expect, log, median, pyexecute, read_lua, timed
from .pinger import window_ms, with_pinger

COUNT_SCRIPT = "GB().count().run()"
COUNTBY_SCRIPT = "GB().countby(lambda r: r['value']).run()"


# ---------------------------------------------------------------------------------------------
# data


def vocabulary(size, seed=1234):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


def word_values(n_keys, vocab_size):
    """The value of key:0..key:N-1, a word each drawn (fixed seed) from a vocabulary of
    `vocab_size` words, and the expected Counter of the words. The cluster workloads (C1, C2)
    load the same data."""
    values = random.Random(42).choices(vocabulary(vocab_size), k=n_keys)
    return values, collections.Counter(values)


def load_words(server, n_keys, vocab_size):
    """key:0..key:N-1 = a word drawn from a ~1000-word vocabulary. MSET of 10k pairs, pipelined.

    Returns (seconds, expected Counter of words)."""
    values, expected = word_values(n_keys, vocab_size)
    c = server.client()
    c.flushall()
    t0 = time.perf_counter()
    chunk = 10_000
    pipe = c.pipeline(transaction=False)
    pending = 0
    for start in range(0, n_keys, chunk):
        args = []
        for i in range(start, min(start + chunk, n_keys)):
            args.append(f"key:{i}")
            args.append(values[i])
        pipe.execute_command("MSET", *args)
        pending += 1
        if pending == 10:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()
    secs = time.perf_counter() - t0
    dbsize = c.dbsize()
    c.close()
    expect(dbsize == n_keys, f"loaded {dbsize} keys, expected {n_keys}")
    return secs, expected


# ---------------------------------------------------------------------------------------------
# the four word counts (each checks its result)


def rg_count(c, n_keys):
    results, _ = pyexecute(c, COUNT_SCRIPT)
    expect(len(results) == 1 and int(results[0]) == n_keys,
           f"{COUNT_SCRIPT}: expected [{n_keys}], got {str(results)[:200]}")


def rg_countby(c, expected):
    results, _ = pyexecute(c, COUNTBY_SCRIPT)
    got = {}
    for rec in results:
        d = ast.literal_eval(as_str(rec))
        got[d["key"]] = d["value"]
    if got != dict(expected):
        missing = set(expected) - set(got)
        extra = set(got) - set(expected)
        wrong = [k for k in set(got) & set(expected) if got[k] != expected[k]][:5]
        raise ValidationError(
            f"{COUNTBY_SCRIPT}: {len(got)} words (expected {len(expected)}), sum {sum(got.values())} "
            f"(expected {sum(expected.values())}); missing {sorted(missing)[:5]}, extra "
            f"{sorted(extra)[:5]}, wrong counts {[(k, got[k], expected[k]) for k in wrong]}")


def client_wordcount(server, expected):
    """The same word count done by a client: SCAN COUNT 1000 + MGET per page + Counter."""
    c = server.client()
    counts = collections.Counter()
    cursor = 0
    pages = 0
    t0 = time.perf_counter()
    while True:
        cursor, keys = c.scan(cursor=cursor, count=1000)
        if keys:
            counts.update(c.mget(keys))
        pages += 1
        if cursor == 0:
            break
        if pages > 10_000_000:
            raise RuntimeError("SCAN did not terminate")
    secs = time.perf_counter() - t0
    c.close()
    got = {k.decode(): v for k, v in counts.items()}
    # SCAN may return a key twice in theory (rehashing); the keyspace is static here.
    expect(len(got) == len(expected) and sum(got.values()) >= sum(expected.values()),
           f"client word count: {len(got)} words / {sum(got.values())} keys, expected "
           f"{len(expected)} / {sum(expected.values())}")
    return secs


def lua_wordcount(c, expected):
    got = c.execute_command("EVAL", read_lua("wordcount.lua"), 0)
    distinct, seen = int(got[0]), int(got[1])
    expect(distinct == len(expected) and seen >= sum(expected.values()),
           f"Lua word count: {distinct} words / {seen} keys, expected {len(expected)} / "
           f"{sum(expected.values())}")


# ---------------------------------------------------------------------------------------------
# P2 and P4


def p2(server, cfg, raw, expected):
    n = cfg["keys"]
    c = server.client()
    # warm-up (compiles and caches the scripts; loads the Lua script)
    warm = timed(rg_count, c, n)[0]
    lua_wordcount(c, expected)
    # Time budget: P2 and P4 together run about 5 module jobs over the keyspace per run. On a
    # build so slow that this alone would exceed ~5 minutes, take fewer runs (recorded).
    cfg["scan_runs"] = cfg["runs"]
    if cfg["runs"] > 1 and cfg["runs"] * 5 * warm > 300:
        cfg["scan_runs"] = max(1, int(300 / (5 * warm)))
        log(f"P2/P4: one count takes {warm:.1f}s: reducing to {cfg['scan_runs']} run(s) to stay in budget")
    runs = {"count_s": [], "countby_s": [], "client_s": [], "lua_s": []}
    for i in range(cfg["scan_runs"]):
        runs["count_s"].append(timed(rg_count, c, n)[0])
        runs["countby_s"].append(timed(rg_countby, c, expected)[0])
        runs["client_s"].append(client_wordcount(server, expected))
        runs["lua_s"].append(timed(lua_wordcount, c, expected)[0])
        server.check_alive("during P2")
        log("P2 run %d: count %.2fs, countby %.2fs, client %.2fs, lua %.2fs" % (
            i + 1, runs["count_s"][-1], runs["countby_s"][-1], runs["client_s"][-1], runs["lua_s"][-1]))
    c.close()
    med = {k: median(v) for k, v in runs.items()}
    raw["p2"] = {"keys": n, "distinct_words": len(expected), "runs_seconds": runs,
                 "median_seconds": med,
                 "records_per_s": {k[:-2]: n / v for k, v in med.items()}}


def p4(server, cfg, raw, expected):
    c = server.client()
    _idle_s, idle = with_pinger(server, lambda: time.sleep(1.0))
    rg, lua = [], []
    for i in range(cfg.get("scan_runs", cfg["runs"])):
        secs, st = with_pinger(server, lambda: rg_countby(c, expected))
        rg.append({"job_s": secs, **st})
        secs, st = with_pinger(server, lambda: lua_wordcount(c, expected))
        lua.append({"job_s": secs, **st})
        server.check_alive("during P4")
        log("P4 run %d: PING max/p99 during countby %.2f/%.2f ms (%d pings), during Lua %.1f/%.1f ms (%d pings)"
            % (i + 1, window_ms(rg[-1], "max_ms"), window_ms(rg[-1], "p99_ms"), rg[-1]["window"]["count"],
               window_ms(lua[-1], "max_ms"), window_ms(lua[-1], "p99_ms"), lua[-1]["window"]["count"]))
    c.close()
    for name, runs in (("countby", rg), ("lua", lua)):
        expect(all(r["window"]["count"] > 0 for r in runs), f"P4 {name}: no PING completed in the window")
    raw["p4"] = {
        "idle": idle, "countby": rg, "lua": lua,
        "countby_max_ms_median": median([r["window"]["max_ms"] for r in rg]),
        "countby_p99_ms_median": median([r["window"]["p99_ms"] for r in rg]),
        "countby_max_ms_worst": max(r["window"]["max_ms"] for r in rg),
        "lua_max_ms_median": median([r["window"]["max_ms"] for r in lua]),
        "lua_p99_ms_median": median([r["window"]["p99_ms"] for r in lua]),
    }
