"""Results: the console tables, results.json, results.md and the results.png chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
ERRORS = "errors"  # measured, but more than ERROR_SHARE of the requests failed
FAILED = "failed"
NOT_AVAILABLE = "n/a"
ERROR_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    method: str
    path: str
    title: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plaintext", "GET", "/", "GET / (13 B text/plain)"),
        Scenario("json", "GET", "/json", "GET /json (small JSON, dumped per request)"),
        Scenario("1m", "GET", "/1m", "GET /1m (1 MiB body)"),
        Scenario("echo", "POST", "/echo", "POST /echo (16 KiB body echoed)"),
    )
}


@dataclass(slots=True)
class Result:
    """One server in one scenario."""

    server: str
    interface: str
    scenario: str
    status: str
    note: str = ""
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    transfer_bytes_per_s: float | None = None
    requests: int | None = None
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    #: user + system CPU of the server's processes (every thread) per request, microseconds
    cpu_us_per_request: float | None = None

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())

    @property
    def measured(self) -> bool:
        return self.status in (OK, ERRORS)


def reference_for(interface: str) -> str:
    """The Portico row that a peer of this interface is compared with."""
    return "portico-asgi" if interface == "ASGI" else "portico-wsgi"


def ratio(results: Sequence[Result], row: Result) -> float | None:
    """Portico's req/s divided by this peer's, when both were measured cleanly."""
    if row.server.startswith("portico") or row.status != OK or not row.rps:
        return None
    ref_name = reference_for(row.interface)
    for ref in results:
        if ref.server == ref_name and ref.scenario == row.scenario and ref.status == OK:
            return (ref.rps or 0.0) / row.rps
    return None


# ----------------------------------------------------------------------------- formatting


def fmt_rps(row: Result) -> str:
    if not row.measured or row.rps is None:
        return row.status
    return f"{row.rps:,.0f}" + ("*" if row.status == ERRORS else "")


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}/s" if unit != "B" else f"{value:.0f} B/s"
        value /= 1024
    return "—"  # unreachable; keeps the type checker content


def fmt_errors(row: Result) -> str:
    if not row.measured:
        return "—"
    if row.errors == 0:
        return "0"
    parts = [f"non-2xx {row.non2xx}"] if row.non2xx else []
    parts += [f"{k} {v}" for k, v in row.socket_errors.items() if v]
    return f"{row.errors} ({', '.join(parts)})"


def fmt_ratio(results: Sequence[Result], row: Result) -> str:
    if row.server.endswith("-pure") and row.status == OK and row.rps:
        # the pure-Python build, as a share of the compiled one
        compiled = reference_for(row.interface)
        for ref in results:
            if ref.server == compiled and ref.scenario == row.scenario and ref.rps:
                return f"{row.rps / ref.rps:.2f}x compiled"
        return "—"
    if row.server.startswith("portico"):
        return "(ref)" if row.status == OK else "—"
    value = ratio(results, row)
    return "—" if value is None else f"{value:.2f}x"


_COLUMNS = (
    "server",
    "interface",
    "req/s",
    "p99 ms",
    "CPU µs/req",
    "transfer/s",
    "errors",
    "portico/peer",
)


def _rows(results: Sequence[Result], scenario: str) -> list[tuple[str, ...]]:
    return [
        (
            r.server,
            r.interface,
            fmt_rps(r),
            fmt_ms(r.p99_ms),
            "—" if r.cpu_us_per_request is None else f"{r.cpu_us_per_request:.1f}",
            fmt_bytes(r.transfer_bytes_per_s),
            fmt_errors(r),
            fmt_ratio(results, r),
        )
        for r in results
        if r.scenario == scenario
    ]


def console_table(
    results: Sequence[Result], scenario: str, seen: set[tuple[str, str]] | None = None
) -> str:
    """The table for one scenario; notes already in ``seen`` are not repeated (and are added)."""
    seen = set() if seen is None else seen
    rows = _rows(results, scenario)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(_COLUMNS)]
    right = {2, 3, 4, 5, 7}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    title = SCENARIOS[scenario].title
    out = [f"== {scenario}: {title}", line(_COLUMNS), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    notes = []
    for r in results:
        if r.scenario == scenario and r.note and (r.server, r.note) not in seen:
            seen.add((r.server, r.note))
            notes.append(f"  {r.server}: {_clip(r.note)}")
    return "\n".join(out + notes)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(
    results: Sequence[Result], meta: dict[str, Any], scenarios: Sequence[str], image: str
) -> str:
    servers: list[tuple[str, str]] = []
    for r in results:
        if (r.server, r.interface) not in servers:
            servers.append((r.server, r.interface))
    by_key = {(r.server, r.scenario): r for r in results}
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    out = [
        "# Portico benchmark",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['nproc']} CPUs, {meta['machine']['cpu_model']}, "
        f"{meta['machine']['kernel']}; load average at start {meta['machine']['loadavg']}",
        f"- Portico: {meta['portico_revision']}",
        f"- Versions: {versions}",
        f"- Method: {meta['method']}",
        f"- Command: `{meta['command']}`",
        "",
        "## Requests per second",
        "",
    ]
    summary_rows = []
    for server, interface in servers:
        cells = [f"**{server}**" if server.startswith("portico") else server, interface]
        for s in scenarios:
            row = by_key.get((server, s))
            cells.append(fmt_rps(row) if row else "—")
        summary_rows.append(cells)
    out.append(
        _md_table(
            ["server", "interface", *scenarios], summary_rows, set(range(2, 2 + len(scenarios)))
        )
    )
    out += ["", f"![requests per second by scenario and server]({image})", ""]
    for s in scenarios:
        table = [list(r) for r in _rows(results, s)]
        for line in table:
            if line[0].startswith("portico"):
                line[0] = f"**{line[0]}**"
        out += [f"## {s}: {SCENARIOS[s].title}", ""]
        out.append(_md_table(_COLUMNS, table, {2, 3, 4, 5, 7}))
        out.append("")
    spread = meta.get("spread")
    if spread:
        out += [
            "## Every round",
            "",
            "Requests per second of each round, then Portico's over each peer's of the same"
            " interface in each round (servers of one round ran seconds apart, so the machine's"
            " drift between rounds cancels out of these ratios), with their median.",
            "",
        ]
        rounds = max(len(values) for values in spread.values())
        header = ["run", *(f"round {n + 1}" for n in range(rounds))]
        out.append(
            _md_table(
                header,
                [
                    [key, *(f"{v:,.0f}" for v in values), *[""] * (rounds - len(values))]
                    for key, values in spread.items()
                ],
                set(range(1, rounds + 1)),
            )
        )
        out.append("")
        paired = meta.get("paired") or {}
        if paired:
            out.append(
                _md_table(
                    [*header, "median"],
                    [
                        [
                            key.replace("÷", " ÷ "),
                            *(f"{v:.2f}x" for v in ratios),
                            *[""] * (rounds - len(ratios)),
                            f"**{sorted(ratios)[(len(ratios) - 1) // 2]:.2f}x**",
                        ]
                        for key, ratios in paired.items()
                    ],
                    set(range(1, rounds + 2)),
                )
            )
            out.append("")
    notes: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if r.note:
            notes.setdefault((r.server, r.note), []).append(r.scenario)
    if notes:
        out += ["## Notes", ""]
        for (server, note), where in notes.items():
            text = note.replace("`", "'")
            out.append(f"- {server} ({', '.join(where)}): `{text}`")
        out.append("")
    out += [
        "`portico/peer` is Portico's req/s divided by the peer's, for the same interface "
        "(portico-asgi for ASGI rows, portico-wsgi for WSGI rows); above 1 means Portico is "
        f"faster. `*` marks a run where more than {ERROR_SHARE:.0%} of requests failed.",
        "",
    ]
    return "\n".join(out)


def write_json(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> None:
    payload = {
        "meta": meta,
        "results": [
            {**asdict(r), "errors": r.errors, "portico_ratio": ratio(results, r)} for r in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- chart

PORTICO_COLOUR = "#d1495b"
PEER_COLOURS = ("#30638e", "#00798c", "#5c6f7b", "#8d99ae", "#3d5a80", "#7a8b99")


def chart(path: Path, results: Sequence[Result], scenarios: Sequence[str], subtitle: str) -> bool:
    """Draw one panel per scenario (their scales differ by orders of magnitude); False if no
    matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: the tables do not need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415
    except ImportError:
        return False

    servers: list[str] = []
    for r in results:
        if r.server not in servers:
            servers.append(r.server)
    peers = [s for s in servers if not s.startswith("portico")]
    colours = {
        s: PORTICO_COLOUR if s.startswith("portico") else PEER_COLOURS[peers.index(s) % 6]
        for s in servers
    }
    iface = {r.server: r.interface for r in results}
    by_key = {(r.server, r.scenario): r for r in results}
    cols = 2 if len(scenarios) > 1 else 1
    rows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(scenarios) :]:
        ax.set_visible(False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        values = []
        for s in servers:
            row = by_key.get((s, scenario))
            values.append(row.rps if row and row.measured and row.rps else 0.0)
        xs = range(len(servers))
        bars = ax.bar(xs, values, color=[colours[s] for s in servers], edgecolor="black", lw=0.4)
        top = max(values) if any(values) else 1.0
        for x, bar, s, v in zip(xs, bars, servers, values, strict=True):
            row = by_key.get((s, scenario))
            label = _short(v) if v else (row.status if row else "—")
            ax.text(x, bar.get_height() + top * 0.01, label, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(servers, rotation=30, ha="right", fontsize=9)
        for tick, s in zip(ax.get_xticklabels(), servers, strict=True):
            if s.startswith("portico"):
                tick.set_fontweight("bold")
                tick.set_color(PORTICO_COLOUR)
        interfaces = [iface.get(s, "") for s in servers]
        for x in range(1, len(servers)):
            if interfaces[x] != interfaces[x - 1]:
                ax.axvline(x - 0.5, color="grey", lw=0.8, ls="--")
        for name in dict.fromkeys(interfaces):
            xs_of = [x for x, i in enumerate(interfaces) if i == name]
            mid = (xs_of[0] + xs_of[-1]) / 2
            ax.text(mid, top * 1.21, name, ha="center", va="top", fontsize=9, color="grey")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.set_ylim(0, top * 1.22)
        ax.set_title(f"{scenario}: {SCENARIOS[scenario].title}", fontsize=10)
        ax.set_ylabel("requests / second")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(f"Portico vs. peers: requests per second (higher is better)\n{subtitle}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}"


def bar_chart(path: Path, values: dict[str, float], *, title: str, ylabel: str) -> bool:
    """One panel of bars, Portico's in its colour; for the side scenarios (WebSocket echo,
    failures during reloads). False if matplotlib is missing."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: the tables do not need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    names = list(values)
    peers = [n for n in names if not n.startswith("portico")]
    colours = [
        PORTICO_COLOUR if n.startswith("portico") else PEER_COLOURS[peers.index(n) % 6]
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2.5, 4.0))
    bars = ax.bar(
        range(len(names)), list(values.values()), color=colours, edgecolor="black", lw=0.4
    )
    top = max(values.values(), default=0.0) or 1.0
    for bar, value in zip(bars, values.values(), strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + top * 0.01,
            _short(value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=9)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
