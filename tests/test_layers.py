"""The layering of src/ (docs/architecture.md#the-house): every folder (or top-level file) uses
only layers below it, and no two use each other. A static check of `crate::` paths; it needs no
server."""

import collections
import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

# Higher may use lower. Rank 0 are leaves any layer uses (plain data and small mechanisms); they
# may use one another as long as no circle forms.
RANK = {
    "lib": 11, "commands": 10, "watchdog": 10,
    "sessions": 9,
    "jobs": 8,
    "pool": 7, "executions": 7,
    "engine": 6,
    "python": 5,
    "registrations": 4, "cluster": 4,
    "redis": 3,
    "store": 1,
    "config": 0, "error": 0, "idle": 0, "ids": 0, "memory": 0, "profile": 0, "reply": 0,
    "report": 0, "stop": 0, "unpoisoned": 0,
}


def layer_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def uses():
    edges = collections.defaultdict(set)
    for path in SRC.rglob("*.rs"):
        src = layer_of(path)
        code = "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())
        for dst in re.findall(r"\bcrate::([a-z_]+)", code):
            if dst != src:
                edges[src].add((dst, path.relative_to(SRC).as_posix()))
    return edges


def test_every_layer_is_ranked():
    layers = {layer_of(p) for p in SRC.rglob("*.rs")}
    assert layers <= set(RANK), f"unranked: {sorted(layers - set(RANK))}"


def test_no_layer_uses_one_above_it():
    upward = [f"{where}: {src} -> {dst}"
              for src, targets in uses().items() for dst, where in targets
              if RANK.get(dst, 0) > RANK.get(src, 0)]
    assert upward == [], "\n".join(sorted(upward))


def test_no_circle_between_layers():
    graph = {src: {dst for dst, _ in targets} for src, targets in uses().items()}
    state, circle = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circle.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circle == [], circle
