"""``python -m portico``."""

from portico.cli import main

raise SystemExit(main())
