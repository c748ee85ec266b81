"""Generated documentation fragments (the README settings table), so docs follow the code."""

from __future__ import annotations

from workbench.settings import SETTINGS


def settings_table() -> str:
    """Markdown table of every setting: name, default and help."""
    lines = ["| setting | default | what it does |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        lines.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(lines)
