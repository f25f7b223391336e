"""Process titles, so that ``ps`` and ``top`` say which process is the master and which a worker."""

from __future__ import annotations

import importlib.util

__all__ = ["set_title"]

_AVAILABLE = importlib.util.find_spec("setproctitle") is not None


def set_title(role: str, detail: str = "") -> None:
    """``portico: ROLE [DETAIL]``, when ``setproctitle`` is installed; otherwise nothing."""
    if not _AVAILABLE:
        return
    import setproctitle  # noqa: PLC0415 -- optional dependency

    setproctitle.setproctitle(f"portico: {role}" + (f" [{detail}]" if detail else ""))
