"""Stand-ins for a TFLite runtime that fails in native code on a box, for the runtime probe's
tests: each module has the ``Interpreter`` and ``load_delegate`` a runtime module has, and
fails the way a runtime built for another CPU does. The real crash (ai-edge-litert under
qemu-user) is in tests/test_package_arm64.py."""
