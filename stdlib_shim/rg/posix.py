"""Sandbox stand-in for `posix` (importlib's external loader imports it by that name)."""

from os import *  # noqa: F401,F403
from os import _have_functions, environ  # noqa: F401
