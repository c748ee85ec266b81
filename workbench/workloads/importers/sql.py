"""Small SQL text helpers shared by the importers: literals, identifiers and the casts that
read a cell as text, as a number or as a quality (true/false or a number)."""

from __future__ import annotations


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _as_text(col: str) -> str:
    return f"CAST({_ident(col)} AS VARCHAR)"


def _quality_sql(col: str) -> str:
    """Correctness/quality as DOUBLE: true/false words or numbers; blanks become NULL."""
    raw = f"lower(trim({_as_text(col)}))"
    return (f"(CASE {raw} WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 "
            f"ELSE TRY_CAST({raw} AS DOUBLE) END)")


def _number_sql(col: str) -> str:
    return f"TRY_CAST(trim({_as_text(col)}) AS DOUBLE)"


def _present_sql(col: str) -> str:
    """The cell holds something (not NULL, not blank)."""
    return f"({_ident(col)} IS NOT NULL AND trim({_as_text(col)}) <> '')"

