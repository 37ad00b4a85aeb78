"""Sandbox stand-in for `marshal`: scripts must not load code objects from bytes."""

version = 5


def _refused(*args, **kwargs):
    raise ValueError('marshal is not available in the rustgears sandbox')


dump = dumps = load = loads = _refused
