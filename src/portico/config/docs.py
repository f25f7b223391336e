"""Print the settings reference, or refresh the README's copy of it.

``python -m portico.config.docs > docs/settings.md`` writes the full reference;
``scripts/gen-docs`` also rewrites the part of the README between the ``<!-- settings:begin -->``
and ``<!-- settings:end -->`` markers (this module only computes text; it reads and writes no
files). Both come from the one table of settings, and tests fail when either copy is stale.
"""

from __future__ import annotations

import sys

from portico.config.render import render_markdown

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def readme_section() -> str:
    """The reference without its generated-file banner and title, for embedding."""
    lines = render_markdown().splitlines()
    body = [line for line in lines if not line.startswith("<!--")]
    while body and (not body[0].strip() or body[0].startswith("# ")):
        body.pop(0)
    return "\n".join(body).strip() + "\n"


def embed(readme: str) -> str:
    """``readme`` with the text between the settings markers replaced by the reference."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the README has no {BEGIN} ... {END} section")
    return f"{head}{BEGIN}\n{readme_section()}{END}{tail}"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
