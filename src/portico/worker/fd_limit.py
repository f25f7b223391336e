"""The worker's file-descriptor limit: enough for ``--max-connections`` when the system allows.

Every connection is a descriptor, and the usual soft ``RLIMIT_NOFILE`` (1,024 on most
distributions) is far below the default of 10,000 connections, while the hard limit often is
not: raising the soft limit up to the hard one needs no privilege (setrlimit(2)), as nginx's
``worker_rlimit_nofile`` and uvicorn-on-systemd setups do. Past the hard limit only the
administrator can help, so the worker says so once, at startup, instead of failing accepts later.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Final

__all__ = ["FD_RESERVE", "ensure_fd_limit"]

# Descriptors a worker holds besides its connections: the listening sockets, the event loop's
# epoll and self-pipe, the master link, log files, files being sent, the WSGI pool's wake-ups.
FD_RESERVE: Final = 64

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


def ensure_fd_limit(
    max_connections: int,
    getrlimit: GetLimit = resource.getrlimit,
    setrlimit: SetLimit = resource.setrlimit,
) -> tuple[int, str | None]:
    """Raise the soft descriptor limit toward what ``max_connections`` needs.

    Returns the soft limit now in force, and a warning to log when it is still below the need
    (``None`` when it is enough).
    """
    needed = max_connections + FD_RESERVE
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        # with no hard ceiling, take what is needed (an unlimited soft limit is refused for
        # NOFILE: the kernel caps it at fs.nr_open)
        target = needed if hard == resource.RLIM_INFINITY else hard
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass  # e.g. a hard limit above fs.nr_open: keep the soft one, and say so below
    if soft != resource.RLIM_INFINITY and soft < needed:
        return soft, (
            f"the file-descriptor limit ({soft}) is too low for --max-connections "
            f"{max_connections} (it needs {needed}): connections past about "
            f"{max(soft - FD_RESERVE, 0)} will fail to be accepted; raise the hard limit "
            "(ulimit -Hn, LimitNOFILE= in systemd) or lower --max-connections"
        )
    return soft, None
