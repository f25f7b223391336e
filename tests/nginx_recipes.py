"""The nginx recipes of ``deploy/nginx/`` run by a real nginx in front of a real Portico.

Each recipe file is used as it is, with only its addresses replaced: Portico's (``127.0.0.1:8000``
for HTTP, ``:8001`` for uwsgi, ``:9000`` for FastCGI) by the ports the kernel gave the test's
server, ``listen 80`` by nginx's own test socket, and ``include X_params`` by Debian's file.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ServerProcess
from tests.gateway_nginx import PARAMS_DIR, Nginx

DEPLOY = Path(__file__).parent.parent / "deploy"
RECIPES = {
    "http": DEPLOY / "nginx" / "portico-http.conf",
    "uwsgi": DEPLOY / "nginx" / "portico-uwsgi.conf",
    "fastcgi": DEPLOY / "nginx" / "portico-fastcgi.conf",
}
#: the address each recipe expects Portico on
RECIPE_ADDRESS = {"http": "127.0.0.1:8000", "uwsgi": "127.0.0.1:8001", "fastcgi": "127.0.0.1:9000"}
PROTOCOLS = tuple(RECIPES)


def recipe(protocol: str, address: str, listen: str = "LISTEN") -> str:
    """The recipe for ``protocol`` pointed at Portico's ``address``, listening on ``listen``."""
    text = RECIPES[protocol].read_text()
    text = text.replace(RECIPE_ADDRESS[protocol], address)
    text = text.replace("listen 80;", f"{listen};")
    return re.sub(r"include (\w+_params);", rf"include {PARAMS_DIR}/\1;", text)


def bound_ports(server: ServerProcess) -> dict[str, int]:
    """The port of each protocol's bind, from the "serving … on" lines."""
    ports = {}
    for protocol in PROTOCOLS:
        assert server.wait_for_log(f"on {protocol}://127.0.0.1:"), server.log
        match = re.search(rf"on {protocol}://127\.0\.0\.1:(\d+)", server.log)
        assert match, server.log
        ports[protocol] = int(match.group(1))
    return ports


def portico_on_every_protocol(
    app: str, *args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """``portico APP`` with an HTTP, a uwsgi and a FastCGI bind (mixed on one server)."""
    return ServerProcess(
        [
            app,
            "--bind",
            "127.0.0.1:0",
            "--bind",
            "uwsgi:127.0.0.1:0",
            "--bind",
            "fastcgi:127.0.0.1:0",
            "--log-level",
            "info",
            *args,
        ],
        env=env,
    )


def nginx_in_front(root: Path, ports: dict[str, int]) -> Nginx:
    """One nginx, one server per recipe: its ``ports`` are in the order of :data:`PROTOCOLS`."""
    blocks = [
        recipe(protocol, f"127.0.0.1:{ports[protocol]}", "LISTEN" + (str(index) if index else ""))
        for index, protocol in enumerate(PROTOCOLS)
    ]
    return Nginx(root, "\n".join(blocks), fronts=len(blocks))


__all__ = [
    "PROTOCOLS",
    "RECIPES",
    "bound_ports",
    "nginx_in_front",
    "portico_on_every_protocol",
    "recipe",
]
