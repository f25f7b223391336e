"""An app module whose import fails: the master must stop with exit code 4, not respawn."""

raise RuntimeError("this module is broken on purpose")
