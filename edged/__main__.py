"""Allow ``python -m edged``."""

from edged.cli import main

raise SystemExit(main())
