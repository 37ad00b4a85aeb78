"""Sandbox stand-in for `zlib`: the native module, with decompression bounded.

Built in Rust (src/python/inflate.rs) and handed over here, so that `import zlib` finds it
again after a script drops it from `sys.modules`.
"""

import sys
import _redisgears

sys.modules[__name__] = _redisgears.zlib
