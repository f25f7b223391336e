"""Print the settings reference: ``python -m portico.config.docs > docs/settings.md``."""

from __future__ import annotations

import sys

from portico.config.render import render_markdown

if __name__ == "__main__":
    sys.stdout.write(render_markdown())
