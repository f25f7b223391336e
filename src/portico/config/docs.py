"""Print the settings reference, or refresh the README's copy of it.

``python -m portico.config.docs > docs/settings.md`` writes the full reference;
``scripts/gen-docs`` also rewrites the part of the README between the ``<!-- settings:begin -->``
and ``<!-- settings:end -->`` markers with the table of settings linked to it (this module only
computes text; it reads and writes no files). Both come from the one table of settings, and tests
fail when either is stale.
"""

from __future__ import annotations

import sys

from portico.config.render import (
    PREAMBLE_BODY,
    render_markdown,
    render_peer_table,
    render_table,
)

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
PEERS_BEGIN = "<!-- peers:begin -->"
PEERS_END = "<!-- peers:end -->"


def readme_section() -> str:
    """What the README shows: where settings come from, and the table of every setting, each
    linked to its entry in ``docs/settings.md`` (the one full reference)."""
    lines = [
        PREAMBLE_BODY.strip(),
        "",
        "Each setting's type, meaning and file key are in [docs/settings.md](docs/settings.md).",
        "",
        *render_table("docs/settings.md"),
    ]
    return "\n".join(lines) + "\n"


def peers_section() -> str:
    """The README's table of gunicorn's and uvicorn's flags that set a Portico setting."""
    lines = [
        *render_peer_table("docs/settings.md"),
        "",
        "The flags accepted with a note, and the refused ones with their alternatives, are in "
        "[docs/compatibility.md](docs/compatibility.md).",
    ]
    return "\n".join(lines) + "\n"


def _replace(text: str, begin: str, end: str, body: str) -> str:
    head, found_begin, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found_begin or not found_end:
        raise ValueError(f"the README has no {begin} ... {end} section")
    return f"{head}{begin}\n{body}{end}{tail}"


def embed(readme: str) -> str:
    """``readme`` with the settings and the peers sections regenerated."""
    readme = _replace(readme, BEGIN, END, readme_section())
    return _replace(readme, PEERS_BEGIN, PEERS_END, peers_section())


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
