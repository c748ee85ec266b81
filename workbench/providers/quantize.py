"""Re-quantize a local GGUF model to a smaller type with llama.cpp's quantize API.

Teams compare quantization levels side by side: `requantize(src, dst, "Q3_K_M")` writes a new
GGUF (via `llama_model_quantize`, allowing re-quantization of an already quantized file) that
the catalog can register as its own model. The output is written to a temporary file first and
renamed on success, so a failed run never leaves a half-written model behind.

Output paths are checked before llama.cpp sees them: `model_output_path` turns a model name into
a file inside the models folder (never `../`, an absolute path, a NUL byte or an over-long
name), and `requantize(..., within=folder)` refuses any target outside `folder`.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.extras import require
from workbench.providers.llama import check_gguf

MAX_MODEL_NAME_CHARS = 100
MAX_FILE_NAME_BYTES = 255  # the limit of common file systems (ext4, APFS, NTFS)


def model_output_path(models_dir: str | os.PathLike[str], name: str) -> Path:
    """The GGUF file for model `name` inside `models_dir`: characters other than letters,
    digits, `.`, `_` and `-` become `_` and leading dots are dropped, so no name reaches
    another folder; a WorkbenchError for an empty name, a NUL byte or more than
    MAX_MODEL_NAME_CHARS characters."""
    if "\x00" in name:
        raise WorkbenchError("the model name contains a NUL byte; use letters, digits, '.', "
                             "'_' or '-'")
    if len(name) > MAX_MODEL_NAME_CHARS:
        raise WorkbenchError(f"the model name is {len(name)} characters long; at most "
                             f"{MAX_MODEL_NAME_CHARS}")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).lstrip(".")
    if not stem.strip("_"):
        raise WorkbenchError(f"the model name {name!r} has no letters or digits to name a file")
    folder = Path(models_dir).expanduser().resolve()
    path = folder / f"{stem}.gguf"
    if path.parent != folder:  # cannot happen after the substitution; kept as the invariant
        raise WorkbenchError(f"model name {name!r} would leave the models folder {folder}")
    return path


def check_output_path(dst: str | os.PathLike[str],
                      within: str | os.PathLike[str] | None = None) -> Path:
    """`dst` as a Path after the checks every quantize target gets: no NUL byte, a file name
    the file system accepts, and inside `within` (after resolving `..` and links) when given."""
    text = os.fspath(dst)
    if "\x00" in text:
        raise WorkbenchError("the output path contains a NUL byte")
    path = Path(text).expanduser()
    if len(path.name.encode()) > MAX_FILE_NAME_BYTES:
        raise WorkbenchError(f"the output file name is {len(path.name.encode())} bytes long; "
                             f"file systems accept at most {MAX_FILE_NAME_BYTES}")
    if within is not None:
        folder = Path(within).expanduser().resolve()
        if not path.resolve().is_relative_to(folder):
            raise WorkbenchError(f"the output {path} is outside the models folder {folder}")
    return path


def quant_types() -> list[str]:
    """Quantization type names llama.cpp offers here (e.g. Q2_K, Q3_K_M, Q4_K_M, Q8_0)."""
    require("llama_cpp", "re-quantization")
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return sorted(n[len(prefix):] for n in dir(llama_cpp) if n.startswith(prefix))


def requantize(
    src_gguf: str | os.PathLike[str],
    dst_gguf: str | os.PathLike[str],
    qtype: str = "Q3_K_M",
    *,
    threads: int = 0,
    overwrite: bool = False,
    within: str | os.PathLike[str] | None = None,
) -> Path:
    """Write `src_gguf` re-quantized to `qtype` at `dst_gguf` and return its path; clear
    WorkbenchErrors for an unknown type, a missing/non-GGUF source, an existing target or a
    target that fails `check_output_path` (outside `within`, when given)."""
    dst = check_output_path(dst_gguf, within)
    require("llama_cpp", "re-quantization")
    import llama_cpp

    src = check_gguf(src_gguf)
    name = qtype.strip().upper()
    valid = quant_types()
    if name not in valid:
        raise WorkbenchError(
            f"unknown quantization type {qtype!r}; valid types: {', '.join(valid)}"
        )
    if dst.resolve() == src:
        raise WorkbenchError(f"re-quantizing {src} onto itself; choose another output path")
    if dst.exists() and not overwrite:
        raise WorkbenchError(f"{dst} already exists; choose another path or pass overwrite")
    if not dst.parent.is_dir():
        raise WorkbenchError(f"output folder {dst.parent} does not exist")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
    params.nthread = int(threads) if threads > 0 else (os.cpu_count() or 1)
    params.allow_requantize = True
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        code = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), llama_cpp.byref(params)
        )
        if code != 0 or not tmp.exists():
            raise WorkbenchError(
                f"llama.cpp could not quantize {src} to {name} (return code {code}); some "
                "types need an importance matrix or an unquantized source"
            )
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    check_gguf(dst)
    return dst
