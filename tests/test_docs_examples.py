"""Runs every example of docs/python-api.md against a fresh server and checks its reply.

Marker convention in the Markdown source
-----------------------------------------
An *example* is a fenced ```python block (the script, sent as-is to RG.PYEXECUTE) followed — with
only blank lines in between — by a fenced ```text block holding the expected reply as a Python literal
(read with ast.literal_eval), as redis-py returns it with decode_responses=True: `[['1'], []]` for
`[results, errors]`, `'OK'` for a script that runs nothing.

HTML comments between the previous example and the ```python block configure the example:

  <!-- setup: SET a 1 -->          a Redis command run before the script (shell-like quoting;
                                    repeat the comment for several commands, they run in order)
  <!-- unordered -->               the order of results (and of errors) is unspecified: both sides
                                    are sorted before comparing
  <!-- error -->                   the script must fail; the text block is the exact error text
                                    (a Python string literal)
  <!-- log: GEARS: something -->   after the script, the server log must contain this text
  <!-- module-args: MyKey MyValue --> module load arguments for this example's server
  <!-- no-test -->                 this ```python block is not an example (no reply follows it)

Every ```python block must either be an example or carry <!-- no-test -->.
"""

import ast
import os
import re
import shlex

import pytest

from conftest import Error

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "python-api.md")

COMMENT = re.compile(r"^<!--\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->$")


class Example:
    def __init__(self, heading, line, script, expected_src, directives):
        self.heading = heading
        self.line = line
        self.script = script
        self.expected_src = expected_src
        self.setup = [shlex.split(v) for k, v in directives if k == "setup"]
        self.unordered = any(k == "unordered" for k, _ in directives)
        self.error = any(k == "error" for k, _ in directives)
        self.logs = [v for k, v in directives if k == "log"]
        self.module_args = [a for k, v in directives if k == "module-args" for a in shlex.split(v)]
        self.id = f"L{line}-{re.sub(r'[^A-Za-z0-9_]+', '_', heading).strip('_')}"

    @property
    def expected(self):
        return ast.literal_eval(self.expected_src)


def parse(path=DOC):
    """-> (examples, problems). Problems are python blocks without a reply and unknown markers."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    examples, problems = [], []
    directives = []
    heading = "top"
    i = 0

    def read_block(start):
        """lines[start] is an opening fence; return (body, index after the closing fence)."""
        j = start + 1
        body = []
        while j < len(lines) and not lines[j].startswith("```"):
            body.append(lines[j])
            j += 1
        return "\n".join(body), j + 1

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = COMMENT.match(stripped)
        if m:
            name, value = m.group(1), m.group(2) or ""
            if name not in ("setup", "unordered", "error", "log", "module-args", "no-test"):
                problems.append(f"line {i + 1}: unknown marker {name!r}")
            directives.append((name, value))
            i += 1
            continue
        if line.startswith("```python"):
            start_line = i + 1
            script, i = read_block(i)
            k = i
            while k < len(lines) and lines[k].strip() == "":
                k += 1
            if k < len(lines) and lines[k].startswith("```text"):
                expected_src, i = read_block(k)
                examples.append(Example(heading, start_line, script, expected_src.strip(), directives))
            elif not any(n == "no-test" for n, _ in directives):
                problems.append(f"line {start_line}: ```python block without a ```text reply block "
                                f"(mark it <!-- no-test --> if it is not an example)")
            directives = []
            continue
        if line.startswith("```"):
            _body, i = read_block(i)
            continue
        i += 1
    return examples, problems


EXAMPLES, PROBLEMS = parse()


def normalise(reply, unordered):
    if unordered and isinstance(reply, list) and len(reply) == 2 and all(isinstance(x, list) for x in reply):
        return [sorted(reply[0], key=repr), sorted(reply[1], key=repr)]
    return reply


def test_doc_is_well_formed():
    assert PROBLEMS == []
    assert len(EXAMPLES) >= 40, len(EXAMPLES)
    for ex in EXAMPLES:
        try:
            ex.expected
        except Exception as e:  # noqa: BLE001 - report the broken literal
            pytest.fail(f"example at line {ex.line}: expected reply is not a Python literal: {e}")


OPERATIONS = ["map", "flatmap", "foreach", "filter", "accumulate", "localgroupby", "groupby",
              "batchgroupby", "repartition", "collect", "limit", "aggregate", "aggregateby", "count",
              "countby", "sort", "distinct", "avg"]
READERS = ["KeysOnlyReader", "StreamReader", "PythonReader", "ShardsIDReader"]
RUNTIME = ["execute", "atomic", "log", "configGet", "gearsConfigGet", "hashtag", "flat_error",
           "isAsyncAllow"]


def test_doc_covers_the_api():
    scripts = "\n".join(ex.script for ex in EXAMPLES)
    missing = [op for op in OPERATIONS if f".{op}(" not in scripts]
    missing += [rd for rd in READERS if f"'{rd}'" not in scripts]
    missing += [fn for fn in RUNTIME if not re.search(r"(?<![\w.])" + re.escape(fn) + r"\(", scripts)]
    if "GB()" not in scripts:
        missing.append("KeysReader (GB())")
    assert missing == []
    with open(DOC, encoding="utf-8") as f:
        headings = {line.lstrip("#").strip() for line in f if line.startswith("#")}
    for name in OPERATIONS + READERS + ["KeysReader", "CommandReader", "execute", "atomic", "log", "hashtag",
                                        "flat_error", "isAsyncAllow"]:
        assert name in headings, name


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.id for ex in EXAMPLES])
def test_doc_example(start_server, example):
    server = start_server(*example.module_args)
    r = server.client()
    for cmd in example.setup:
        r.execute_command(*cmd)
    expected = example.expected
    if example.error:
        raw = server.raw()
        res = raw.call("RG.PYEXECUTE", example.script)
        assert type(res) is Error, f"expected an error reply, got {res!r}"
        assert str(res) == expected
    else:
        reply = r.execute_command("RG.PYEXECUTE", example.script)
        assert normalise(reply, example.unordered) == normalise(expected, example.unordered)
    for text in example.logs:
        server.wait_log(text)
