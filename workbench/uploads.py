"""Saving an uploaded workload file: size-limited, and always inside `<data dir>/uploads`.

The browser chooses an upload's name, so it is untrusted: `save_upload` keeps only a safe
base name (no folders, `..`, absolute paths, NUL or control characters, at most
MAX_NAME_CHARS), prefixes the content digest, checks the resolved path is in the uploads
folder, and writes through a temporary file so a failed write leaves nothing half-written.
The Workloads page also passes MAX_UPLOAD_MB to Streamlit's uploader, which refuses larger
files before they reach the app.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from workbench.errors import WorkbenchError

MAX_UPLOAD_MB = 1024
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_NAME_CHARS = 100


def safe_upload_name(name: str) -> str:
    """A file name that stays in its folder: the last path part of `name` (either slash),
    characters other than letters, digits, `.`, `_` and `-` as `_`, no leading dots, the
    extension kept when shortening to MAX_NAME_CHARS; `upload` when nothing is left."""
    base = re.split(r"[/\\]", name.replace("\x00", ""))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    if len(base) > MAX_NAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        base = base[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext if ext else \
            base[:MAX_NAME_CHARS]
    return base if base.strip("._-") else "upload"


def save_upload(home: str | os.PathLike[str], name: str, data: bytes,
                max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Write an uploaded file to `<home>/uploads/<digest>-<safe name>` (once per content and
    name) and return its path; a WorkbenchError when it is larger than `max_bytes`."""
    if len(data) > max_bytes:
        raise WorkbenchError(f"the upload is {len(data) / 1e6:.1f} MB; the limit is "
                             f"{max_bytes / 1e6:.1f} MB")
    folder = (Path(home).expanduser() / "uploads").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = folder / f"{digest}-{safe_upload_name(name)}"
    if path.parent != folder:  # cannot happen after safe_upload_name; kept as the invariant
        raise WorkbenchError(f"upload name {name!r} would leave the uploads folder")
    if path.is_file():
        return path
    tmp = folder / f".{path.name}.partial"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def in_user_terms(message: str, path: str | os.PathLike[str], shown_name: str) -> str:
    """A message about a saved upload with the saved path (or its safe name) replaced by the
    name the user chose, which is the only name they know."""
    p = Path(path)
    for text in sorted({str(p), str(p.resolve()), p.name}, key=len, reverse=True):
        message = message.replace(text, shown_name)
    return message


@contextlib.contextmanager
def upload_errors(path: str | os.PathLike[str], shown_name: str,
                  show: Callable[[str], object]) -> Iterator[None]:
    """Report a WorkbenchError about an upload in the user's terms (via `show`) and delete the
    rejected file, so the uploads folder keeps only files that were imported or are being
    mapped; other exceptions (and Streamlit's rerun) pass through."""
    try:
        yield
    except WorkbenchError as exc:
        show(in_user_terms(str(exc), path, shown_name))
        with contextlib.suppress(OSError):
            Path(path).unlink()
