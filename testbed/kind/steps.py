"""Build and start steps that say what they do, how long it took, and how to retry a failure."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Log = Callable[[str], None]


class StepFailed(RuntimeError):
    """A step failed; the message names the step, the cause and how to retry."""


@contextmanager
def step(log: Log, what: str, retry: str) -> Iterator[None]:
    """Log `what` with its duration; turn any failure into a `StepFailed` naming `retry`."""
    started = time.monotonic()
    log(f"[kind] {what} ...")
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(
            f"{what} failed after {time.monotonic() - started:.0f} s: {exc}\n  retry: {retry}"
        ) from exc
    log(f"[kind] {what}: done in {time.monotonic() - started:.1f} s")


def run(
    argv: list[str | Path],
    *,
    what: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    log_file: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command; on failure raise with its exit code and the end of its output."""
    args = [str(a) for a in argv]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            out.write(f"$ {' '.join(args)}\n".encode())
            out.flush()
            proc = subprocess.run(
                args, env=env, input=input, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        if proc.returncode != 0:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise StepFailed(f"{what} failed (exit {proc.returncode}); end of {log_file}:\n{tail}")
        return ""
    proc = subprocess.run(args, env=env, input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()
        tail = "\n".join(lines[-15:])
        raise StepFailed(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout.decode(errors="replace")
