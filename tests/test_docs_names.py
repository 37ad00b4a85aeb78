"""docs/python-api.md names exactly what a script has: every name in its table of session globals
(docs/python-api.md#script-environment) and in its tables of the `redisgears` module
(docs/python-api.md#the-redisgears-module) exists, and nothing else does."""

import ast
import os
import re

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "python-api.md")


def section(heading):
    """The lines of the section under `heading`, up to the next heading of the same or a higher level."""
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = lines.index(heading) + 1
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start, len(lines))
                if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level), len(lines))
    return lines[start:end]


def table_names(lines):
    """The `backticked` names in the first column of every table in `lines` (header rows excluded)."""
    names = set()
    for line in lines:
        if not line.startswith("|") or line.startswith("|---"):
            continue
        first = line.split("|")[1]
        names |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
    return names


def script_names(raw, expression):
    """The names `expression` lists inside a script, without dunder names."""
    reply = raw.call("RG.PYEXECUTE",
                     f"GB('ShardsIDReader').map(lambda x: repr(sorted({expression}))).run()")
    return {n for n in ast.literal_eval(reply[0][0].decode()) if not n.startswith("__")}


def test_the_tables_were_found():
    assert {"GB", "execute", "redisgears"} <= table_names(section("## Script environment"))
    assert {"executeCommand", "GearsError"} <= table_names(section("### The redisgears module"))


def test_documented_globals_are_exactly_the_session_globals(raw):
    documented = table_names(section("## Script environment"))
    # `dir()` inside the lambda would list its locals; the session's globals are what it sees.
    assert script_names(raw, "globals()") == documented


def test_documented_redisgears_names_are_exactly_the_module(raw):
    documented = table_names(section("### The redisgears module"))
    public = script_names(raw, "n for n in dir(redisgears) if not n.startswith('_')")
    assert public == documented
