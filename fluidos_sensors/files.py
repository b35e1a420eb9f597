"""Files other processes read while they are written: status files, credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(
    path: Path, body: Any, *, indent: int | None = None, mode: int = 0o666
) -> None:
    """Write `body` as JSON to `path` so that a reader finds the old file or the new one, never
    a part: into `.NAME.tmp` beside it, then renamed over it. `mode`: the permissions the
    temporary file is created with (before the umask), e.g. 0o600 for credentials."""
    text = json.dumps(body, indent=indent)  # before any file: a body that fails leaves none
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
