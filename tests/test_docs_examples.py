"""Runs the examples of README.md and docs/ against fresh servers and checks their replies.

docs/python-api.md: scripts
---------------------------
An *example* is a fenced ```python block (the script, sent as-is to RG.PYEXECUTE) followed — with
only blank lines in between — by a fenced ```text block holding the expected reply as a Python literal
(read with ast.literal_eval), as redis-py returns it with decode_responses=True: `[['1'], []]` for
`[results, errors]`, `'OK'` for a script that runs nothing. A reply that ends with the comment
`# in any order` is compared with both sides sorted (results, and errors).

The data an example needs is shown, not hidden: a ```sh block of `redis-cli <command>` lines right
above the ```python block (only blank lines in between) is run first, in order.

HTML comments between the previous example and the ```python block say how to check it (they never
hold data):

  <!-- error -->                   the script must fail; the text block is the exact error text
                                    (a Python string literal)
  <!-- log: GEARS: something -->   after the script, the server log must contain this text
  <!-- module-args: MyKey MyValue --> module load arguments for this example's server
  <!-- no-test -->                 this ```python block is not an example (no reply follows it)

Every ```python block must either be an example or carry <!-- no-test -->.

README.md and every page of docs/: sessions
-------------------------------------------
- A fenced block whose first line is a redis-cli prompt (`127.0.0.1:6379> `) is a transcript: its
  commands are typed into `redis-cli` on a fresh server, and the output must be the block's other
  lines.
- A ```sh block with `redis-cli` lines is run as it is by bash, in an empty directory, on a fresh
  server; its output must be the block's lines that start with `# ` (without the `# `).
- A ```sh block with `redis-server ... --loadmodule <path> <args>` lines: a server must start with
  those module arguments.
Other fenced blocks describe (command syntax, reply shapes, error texts, build and benchmark
commands, code that the text explains) and are not run.
"""

import ast
import glob
import os
import re
import shlex
import subprocess

import pytest

from conftest import Error

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
DOC = os.path.join(ROOT, "docs", "python-api.md")
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
UNORDERED = "# in any order"

COMMENT = re.compile(r"^<!--\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->$")


class Example:
    def __init__(self, heading, line, script, expected_src, directives, setup):
        self.heading = heading
        self.line = line
        self.script = script
        self.expected_src = expected_src
        self.setup = setup
        self.unordered = expected_src.rstrip().endswith(UNORDERED)
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
    directives, setup = [], []
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
            if name in ("setup", "unordered"):
                problems.append(f"line {i + 1}: <!-- {name} --> hides what the reader needs: use a visible "
                                f"redis-cli block or {UNORDERED!r}")
            elif name not in ("error", "log", "module-args", "no-test"):
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
                examples.append(Example(heading, start_line, script, expected_src.strip(), directives, setup))
            elif not any(n == "no-test" for n, _ in directives):
                problems.append(f"line {start_line}: ```python block without a ```text reply block "
                                f"(mark it <!-- no-test --> if it is not an example)")
            directives, setup = [], []
            continue
        if line.startswith("```"):
            body, i = read_block(i)
            if line.startswith("```sh") and next_block_is_python(lines, i):
                setup = [shlex.split(c)[1:] for c in body.split("\n") if c.strip()]
                if not all(c.startswith("redis-cli ") for c in body.split("\n") if c.strip()):
                    problems.append(f"line {i}: a setup block holds only `redis-cli <command>` lines")
            continue
        i += 1
    return examples, problems


def next_block_is_python(lines, i):
    while i < len(lines) and lines[i].strip() == "":
        i += 1
    return i < len(lines) and lines[i].startswith("```python")


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


# --------------------------------------------------------------------------------------------
# README.md and docs/: redis-cli transcripts and shell sessions
# --------------------------------------------------------------------------------------------

PROMPT = re.compile(r"^127\.0\.0\.1:6379(?:\[\d+\])?> (.*)$")
TIMING = re.compile(r"^\(\d+\.\d+s\)$")


class Session:
    def __init__(self, page, line, kind, body):
        self.page, self.line, self.kind, self.body = page, line, kind, body
        self.id = f"{os.path.basename(page)}-L{line}-{kind}"


def sessions(pages=PAGES):
    """Every transcript, redis-cli shell block and module-loading shell block of the pages."""
    found = []
    for page in pages:
        with open(page, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            fence = lines[i]
            if not fence.startswith("```"):
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body = lines[i + 1:j]
            first = body[0] if body else ""
            if PROMPT.match(first):
                found.append(Session(page, i + 1, "transcript", body))
            elif fence.startswith("```sh") and not next_block_is_python(lines, j + 1):
                if any(b.startswith("redis-cli") for b in body):
                    found.append(Session(page, i + 1, "shell", body))
                elif any(b.startswith("redis-server") and "--loadmodule" in b for b in body):
                    found.append(Session(page, i + 1, "loadmodule", body))
            i = j + 1
    return found


SESSIONS = sessions()


def redis_cli(port, commands, cwd=None):
    """Types `commands` into redis-cli (formatted output, as in a terminal)."""
    run = subprocess.run(["redis-cli", "-p", str(port), "--no-raw"], input="\n".join(commands) + "\n",
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    assert run.returncode == 0, run.stderr
    # redis-cli adds `(1.02s)` after a slow command; transcripts leave the timing out.
    return "".join(line for line in run.stdout.splitlines(keepends=True) if not TIMING.match(line))


def test_pages_have_sessions():
    kinds = {(os.path.basename(s.page), s.kind) for s in SESSIONS}
    assert {("README.md", "shell"), ("README.md", "loadmodule"), ("commands.md", "transcript"),
            ("commands.md", "loadmodule")} <= kinds, kinds


@pytest.mark.parametrize("session", SESSIONS, ids=[s.id for s in SESSIONS])
def test_doc_session(start_server, tmp_path, session):
    if session.kind == "loadmodule":
        for line in session.body:
            words = shlex.split(line.split("#")[0])
            if not words or words[0] != "redis-server":
                continue
            module_args = words[words.index("--loadmodule") + 2:]
            server = start_server(*module_args)
            assert server.client().execute_command("RG.DUMPEXECUTIONS") == []
        return
    server = start_server()
    if session.kind == "transcript":
        commands = [PROMPT.match(b).group(1) for b in session.body if PROMPT.match(b)]
        expected = [b for b in session.body if not PROMPT.match(b)]
        assert redis_cli(server.port, commands).split("\n")[:-1] == expected
    else:
        # The block runs unchanged; only the server it talks to differs.
        wrapper = f'redis-cli() {{ command redis-cli -p {server.port} --no-raw "$@"; }}\n'
        run = subprocess.run(["bash", "-e", "-c", wrapper + "\n".join(session.body)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        expected = [b[2:] for b in session.body if b.startswith("# ")]
        assert run.stdout.split("\n")[:-1] == expected
