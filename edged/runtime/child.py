"""Entry point of an ``isolation: process`` child: ``python -m edged.runtime.child``.

A module of its own because ``edged.runtime`` imports ``isolation``: running that module
with ``-m`` would execute it a second time as ``__main__``.
"""

import sys

from edged.runtime.isolation import child_main

sys.exit(child_main(sys.argv[1:]))
