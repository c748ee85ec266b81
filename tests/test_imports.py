"""Import hygiene: the library never imports streamlit (only workbench/ui and pages do), and
heavy packages (litellm, llama_cpp, optuna) load where they are used, not at app start."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_streamlit() -> None:
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "workbench").rglob("*.py")
        if "ui" not in p.relative_to(ROOT / "workbench").parts[:1]
        and "streamlit" in _imported_modules(p)
    ]
    assert offenders == []


def test_heavy_packages_are_not_imported_at_module_level() -> None:
    heavy = {"litellm", "llama_cpp", "optuna"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_top_level_modules(p) & heavy)
        for p in [*(ROOT / "workbench").rglob("*.py"), *(ROOT / "pages").glob("*.py"),
                  ROOT / "app.py"]
        if _top_level_modules(p) & heavy and "bench" not in p.parts
    }
    assert offenders == {}


def test_app_start_modules_load_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "import workbench.store, workbench.catalog, workbench.runner, workbench.replay\n"
        "import workbench.compose, workbench.journey, workbench.providers.hosted\n"
        "import workbench.export, workbench.router, workbench.ui\n"
        "print(sorted(m for m in ('litellm', 'llama_cpp', 'optuna') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_parser_loads_no_extra_package() -> None:
    """Every command is registered in every install, so building the parser (which every
    `workbench` command does) must not import a package of an extra, nor LiteLLM."""
    code = (
        "import sys\n"
        "from workbench.cli import build_parser\n"
        "from workbench.extras import EXTRAS\n"
        "build_parser()\n"
        "print(sorted(m for m in (*EXTRAS, 'litellm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
