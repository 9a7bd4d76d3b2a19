"""Writing output files: all or nothing, with the usual permissions."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .diagnostics import CompileError, Diagnostic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield (file, final path) for writing; the file replaces `path` only if the block
    completes, so a failure leaves any previous file untouched and no temporary behind."""
    if not path or path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise CompileError(Diagnostic(f"cannot write {path!r}: give a file name, not a folder", None))
    out = Path(path)
    if out.is_dir():
        raise CompileError(Diagnostic(f"cannot write {path}: it is a directory", None))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(out.parent))
    except (FileExistsError, NotADirectoryError):
        raise CompileError(Diagnostic(f"cannot write {path}: a part of its folder path is a file", None)) from None
    except OSError as e:
        raise CompileError(Diagnostic(f"cannot write {path}: {e.strerror or e}", None)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, out
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    with atomic_output(path) as (f, _):
        f.write(data)
