"""Re-quantize a local GGUF model to a smaller type with llama.cpp's quantize API.

Teams compare quantization levels side by side: `requantize(src, dst, "Q3_K_M")` writes a new
GGUF (via `llama_model_quantize`, allowing re-quantization of an already quantized file) that
the catalog can register as its own model. The output is written to a temporary file first and
renamed on success, so a failed run never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.extras import require
from workbench.providers.local import check_gguf


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
) -> Path:
    """Write `src_gguf` re-quantized to `qtype` at `dst_gguf` and return its path; clear
    WorkbenchErrors for an unknown type, a missing/non-GGUF source or an existing target."""
    require("llama_cpp", "re-quantization")
    import llama_cpp

    src = check_gguf(src_gguf)
    dst = Path(dst_gguf).expanduser()
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
