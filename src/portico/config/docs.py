"""Print the settings reference, or refresh the README's copy of it.

``python -m portico.config.docs > docs/settings.md`` writes the full reference;
``scripts/gen-docs`` also rewrites the part of the README between the ``<!-- settings:begin -->``
and ``<!-- settings:end -->`` markers with the table of settings linked to it (this module only
computes text; it reads and writes no files). Both come from the one table of settings, and tests
fail when either is stale.
"""

from __future__ import annotations

import sys

from portico.config.render import PREAMBLE_BODY, render_markdown, render_table

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


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


def embed(readme: str) -> str:
    """``readme`` with the text between the settings markers replaced by the reference."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the README has no {BEGIN} ... {END} section")
    return f"{head}{BEGIN}\n{readme_section()}{END}{tail}"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
