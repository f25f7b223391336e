"""Settings: one declarative table, and the sources a ``Config`` is resolved from.

This package does no I/O: it takes argv lists, environment mappings and a ``read_text`` function.
"""

from portico.config.render import format_resolved, render_markdown
from portico.config.settings import ACTIONS, SETTINGS, Config, Setting
from portico.config.sources import Action, Resolved, resolve

__all__ = [
    "ACTIONS",
    "SETTINGS",
    "Action",
    "Config",
    "Resolved",
    "Setting",
    "format_resolved",
    "render_markdown",
    "resolve",
]
