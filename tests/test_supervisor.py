"""The master's parts that need no process: the worker link, the reload filter, sd_notify,
systemd's environment, and the settings the master adds."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from portico.config import kinds
from portico.runtime.binds import systemd_sockets
from portico.supervisor.notify import Notifier
from portico.supervisor.process import describe_exit
from portico.supervisor.reloader import PathFilter
from portico.worker.link import MAX_LINE, MasterLink, parse


def test_link_lines_arrive_whole_whatever_the_reads() -> None:
    read_end, write_end = os.pipe()
    link = MasterLink(write_end, os.getppid())
    link.ready("app:x\nforged retire")
    assert link.beat()
    link.retire()
    data = os.read(read_end, 4096)
    buffer = bytearray()
    messages = []
    for byte in data:  # one byte at a time: no message before its newline
        buffer.append(byte)
        messages += parse(buffer)
    assert messages == [("ready", "app:x forged retire"), ("beat", ""), ("retire", "")]
    assert not link.orphaned()
    os.close(read_end)
    assert not link.beat()  # the master is gone: the pipe is broken
    os.close(write_end)


def test_link_drops_a_line_that_never_ends() -> None:
    buffer = bytearray(b"x" * (MAX_LINE + 1))
    assert parse(buffer) == []
    assert buffer == b""


def test_reload_filter_includes_and_excludes() -> None:
    accept = PathFilter(("*.py", "*.html"), (".*", "__pycache__"))
    assert accept(None, "/srv/app/views.py")
    assert accept(None, "/srv/app/templates/index.html")
    assert not accept(None, "/srv/app/README.md")
    assert not accept(None, "/srv/app/.venv/lib/site.py")
    assert not accept(None, "/srv/app/__pycache__/views.cpython-311.py")
    assert not accept(None, "/srv/app/.views.py.swp")


def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    receiver.settimeout(5)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier.enabled
    notifier.ready("2 worker(s) serving")
    assert receiver.recv(4096).decode() == (
        f"READY=1\nSTATUS=2 worker(s) serving\nMAINPID={os.getpid()}"
    )
    notifier.reloading()
    assert receiver.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
    notifier.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    notifier.close()
    receiver.close()
    silent = Notifier({})
    assert not silent.enabled
    silent.ready("x")  # no socket, nothing to do


def test_notifier_abstract_socket_name() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@systemd/notify"}).address == "\0systemd/notify"


def test_systemd_environment_for_another_process_is_ignored_and_removed() -> None:
    environ = {"LISTEN_FDS": "1", "LISTEN_PID": "1", "LISTEN_FDNAMES": "web", "PATH": "/bin"}
    assert systemd_sockets(environ, os.getpid()) == []
    assert environ == {"PATH": "/bin"}  # children must not take fd 3 for a socket
    assert systemd_sockets({}, os.getpid()) == []


def test_exit_descriptions() -> None:
    assert describe_exit(4) == "exit code 4"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-(signal.SIGRTMIN + 2)) == f"signal {signal.SIGRTMIN + 2}"


@pytest.mark.parametrize(
    ("raw", "value"), [("0o117", 0o117), ("0117", 0o117), ("7", 0o7), ("0", 0), (0o22, 0o22)]
)
def test_mode_kind(raw: object, value: int) -> None:
    assert kinds.MODE.convert(raw) == value


def test_mode_kind_refuses_a_mask_that_reads_two_ways() -> None:
    # chmod reads 117 as octal, gunicorn's --umask as decimal: neither is guessed
    with pytest.raises(ValueError, match="ambiguous: write it in octal as 0o117"):
        kinds.MODE.convert("117")


@pytest.mark.parametrize("raw", ["8", "0o1000", "rw", True, 1.5])
def test_mode_kind_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match=r"octal|between"):
        kinds.MODE.convert(raw)


def test_seconds_or_zero_and_strings_kinds() -> None:
    assert kinds.SECONDS_OR_ZERO.convert("0") == 0.0
    assert kinds.SECONDS_OR_ZERO.convert(0) == 0.0
    assert kinds.SECONDS_OR_ZERO.convert("2.5") == 2.5
    with pytest.raises(ValueError, match="> 0 \\(or 0\\)"):
        kinds.SECONDS_OR_ZERO.convert("-1")
    assert kinds.STRINGS.convert("*.py, *.html") == ("*.py", "*.html")
    assert kinds.STRINGS.convert(["*.py"]) == ("*.py",)
