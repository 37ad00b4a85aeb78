"""`make deps` installs libclang-dev exactly when the libclang that bindgen loads is missing, whatever
other libclang* files the machine has (libclang-cpp is not it).

No container: LIBCLANG_SEARCH points the check at a scratch directory that plays the machine's
library directories, and APT_GET at a stand-in that records what would be installed."""

import os
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(*args):
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def machine(tmp_path):
    """A fake library directory, and `deps()`: runs `make deps` against it, returns the run and
    the words apt-get was called with (empty when nothing was missing)."""
    libs = tmp_path / "lib"
    libs.mkdir()
    log = tmp_path / "apt.log"
    apt = tmp_path / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)

    def deps():
        run = make("deps", f"LIBCLANG_SEARCH={libs}", f"APT_GET={apt}")
        assert run.returncode == 0, run.stderr
        return run, log.read_text().split() if log.exists() else []

    return libs, deps


def test_only_libclang_cpp_installs_libclang_dev(machine):
    libs, deps = machine
    (libs / "libclang-cpp.so.14").touch()
    run, installed = deps()
    assert "libclang-dev" in installed
    assert "libclang-dev" in run.stdout
    assert "Error" not in run.stderr  # the check is quiet; only the outcome is reported


@pytest.mark.parametrize("name", ["libclang-14.so.1", "libclang.so", "libclang.so.14", "libclang-18.so"])
def test_a_loadable_libclang_installs_nothing_for_it(machine, name):
    libs, deps = machine
    (libs / "libclang-cpp.so.14").touch()
    (libs / name).touch()
    _run, installed = deps()
    assert "libclang-dev" not in installed


def test_has_libclang_names_what_it_found(machine):
    libs, _deps = machine
    missing = make("has-libclang", f"LIBCLANG_SEARCH={libs}")
    assert missing.returncode != 0
    assert "make deps installs libclang-dev" in missing.stdout
    (libs / "libclang-14.so.1").touch()
    found = make("has-libclang", f"LIBCLANG_SEARCH={libs}")
    assert found.returncode == 0 and found.stdout.strip() == str(libs / "libclang-14.so.1")
