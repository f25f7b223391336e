#!/usr/bin/env python3
"""Static files: Portico's ``--static`` against granian's static mount and a real nginx.

    python bench/static.py [--duration 10] [--connections 64] [--servers portico,granian,nginx]
                           [--files 4k,1m] [--out bench/out]

The same folder (a 4 KiB and a 1 MiB file, written by the script) is served by Portico
(``--static /static=DIR`` in front of the benchmark's ASGI app), granian
(``--static-path-route /static --static-path-mount DIR``) and nginx (``location /static/`` with
``sendfile on``, one worker process, access log off), each pinned to CPU 0 with wrk
(``-t1 -c64``) on CPU 1 after a 1 s warm-up. The table gives req/s, p99 and Portico's ratio to
each peer; the chart goes to ``out/static-results.png``. Uses bench/.venv like ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import _wrk as wrk
import run

ROWS = ("portico", "granian", "nginx")
FILES = {"4k": 4096, "1m": 1 << 20}
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def make_folder(out: Path) -> Path:
    folder = out / "static-files"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in FILES.items():
        (folder / f"{name}.bin").write_bytes(bytes(range(256)) * (size // 256))
    return folder


def nginx_spec(out: Path, folder: Path) -> servers.ServerSpec:
    def argv(port: int) -> list[str]:
        root = out / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conf = root / "nginx.conf"
        user = os.environ.get("USER") or "root"
        conf.write_text(
            f"user {user};\nworker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\n"
            f"error_log {root}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            "http {\n    access_log off;\n    sendfile on;\n    tcp_nopush on;\n"
            f"    client_body_temp_path {root}/body;\n    proxy_temp_path {root}/proxy;\n"
            f"    fastcgi_temp_path {root}/fastcgi;\n    uwsgi_temp_path {root}/uwsgi;\n"
            f"    scgi_temp_path {root}/scgi;\n    keepalive_requests 1000000;\n"
            f"    server {{ listen {servers.HOST}:{port};\n"
            f"        location /static/ {{ alias {folder}/; }} }}\n}}\n"
        )
        return [NGINX, "-p", str(root), "-c", str(conf)]

    return servers.ServerSpec("nginx", "nginx", "static", argv)


def specs(bin_dir: Path, out: Path, folder: Path) -> dict[str, servers.ServerSpec]:
    known = {s.name: s for s in servers.specs(bin_dir, hypercorn_worker="uvloop", portico_extra=[])}
    portico = known["portico-asgi"]
    granian = known["granian-asgi"]
    return {
        "portico": servers.ServerSpec(
            "portico",
            "portico",
            "static",
            lambda port: [*portico.argv(port), "--static", f"/static={folder}"],
        ),
        "granian": servers.ServerSpec(
            "granian",
            "granian",
            "static",
            lambda port: [
                *granian.argv(port)[:-1],
                "--static-path-route",
                "/static",
                "--static-path-mount",
                str(folder),
                granian.argv(port)[-1],
            ],
        ),
        "nginx": nginx_spec(out, folder),
    }


def wait_listening(server: servers.RunningServer, timeout_s: float = 20.0) -> None:
    """Ready when a file comes back whole (nginx serves no ``GET /``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive:
            raise servers.ServerError(f"exited: {server.log_tail()}")
        try:
            status, _, body = servers.request(server.port, "GET", "/static/4k.bin", timeout_s=2)
            if status == 200 and len(body) == FILES["4k"]:
                return
        except (OSError, ConnectionError):
            pass
        time.sleep(0.05)
    raise servers.ServerError(f"not ready: {server.log_tail()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--servers", default=",".join(ROWS))
    p.add_argument("--files", default=",".join(FILES))
    p.add_argument("--out", type=Path, default=run.BENCH_DIR / "out")
    p.add_argument("--skip-setup", action="store_true")
    args = p.parse_args()
    if not run.in_venv():
        if not args.skip_setup or not run.VENV_PYTHON.exists():
            run.ensure_venv(force=False)
        python = str(run.VENV_PYTHON)
        os.execv(python, [python, __file__, *sys.argv[1:], "--skip-setup"])
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    folder = make_folder(out)
    table = specs(run.VENV_BIN, out, folder)
    names = [n for n in args.servers.split(",") if n]
    files = [f for f in args.files.split(",") if f]
    results: dict[str, dict[str, Any]] = {f: {} for f in files}
    facts = run.machine()
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load {facts['loadavg']}")
    for name in names:
        server = servers.RunningServer(
            table[name], cpu=0, cwd=run.REPO_ROOT, log_path=out / "logs" / f"static-{name}.log"
        )
        try:
            wait_listening(server)
            for file in files:
                url = f"http://{servers.HOST}:{server.port}/static/{file}.bin"
                got = wrk.WrkResult()
                for duration in (1, args.duration):
                    argv = wrk.command(
                        url, duration_s=duration, connections=args.connections, script=None, cpu=1
                    )
                    got = wrk.parse(wrk.run(argv, duration_s=duration))
                results[file][name] = {"rps": got.rps, "p99_ms": got.p99_ms, "errors": got.errors}
                print(f"  {name:<8} {file:<3} {got.rps:>10,.0f} req/s  errors {got.errors}")
        except (servers.ServerError, wrk.WrkError, OSError) as exc:
            for file in files:
                results[file].setdefault(name, {"failed": str(exc)})
            print(f"  {name}: failed: {exc}")
        finally:
            server.stop()
    lines = [
        f"Static files, one worker/process on CPU 0, wrk -t1 -c{args.connections} "
        f"-d{args.duration}s on CPU 1",
        "",
        "| file | " + " | ".join(names) + " | " + " | ".join(f"portico ÷ {n}" for n in names[1:]),
        "|---|" + "---:|" * (len(names) * 2 - 1),
    ]
    for file in files:
        row = results[file]
        mine = row.get("portico", {}).get("rps")
        cells = [f"{row[n]['rps']:,.0f}" if "rps" in row.get(n, {}) else "failed" for n in names]
        ratios = [
            f"{mine / row[n]['rps']:.2f}x" if mine and "rps" in row.get(n, {}) else ""
            for n in names[1:]
        ]
        lines.append(f"| {file} | " + " | ".join(cells + ratios) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "static-results.md").write_text(text + "\n", encoding="utf-8")
    (out / "static-results.json").write_text(
        json.dumps({"machine": facts, "results": results}, indent=2), encoding="utf-8"
    )
    for file in files:
        rates = {n: float(g["rps"]) for n, g in results[file].items() if "rps" in g}
        report.bar_chart(
            out / f"static-{file}.png",
            rates,
            title=f"Static {file} file (req/s)",
            ylabel="requests / second",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
