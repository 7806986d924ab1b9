"""How a command talks: results to stdout, progress and warnings to stderr, errors
as one line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from proxyscope.errors import ProxyscopeError, ProxyscopeWarning

PROG = "proxyscope"
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_UNCONVERGED = 0, 1, 2, 3


class UsageError(Exception):
    """A command-line syntax error (unknown option, missing argument, bad number)."""


#: The operating system's errors about a file the user named (missing, no
#: permission, a directory where a file belongs or the reverse, already there).
FILE_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)
#: Errors that mean "bad input or spec": reported in one line, exit code 2. Not
#: ValueError, TypeError or KeyError: proxyscope checks its input where it enters
#: and raises its own errors, so one of those is a bug (exit code 1).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ProxyscopeError, UsageError, *FILE_ERRORS)


def is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input (exit code 2) rather than a bug (exit code 1).

    Besides :data:`INPUT_ERRORS`, an OSError the operating system raised on a named
    path (no space left on a device, a name too long) is the user's to fix; an
    OSError without a path (a library's "file signature not found") is not: that a
    library met a file it could not read means proxyscope did not check it first.
    """
    if isinstance(exc, INPUT_ERRORS):
        return True
    return isinstance(exc, OSError) and exc.filename is not None


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (an OSError with the file it is about)."""
    if isinstance(exc, FileNotFoundError) and exc.filename and not exc.args[1:]:
        text = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def internal_error(exc: BaseException) -> str:
    """The one line that reports a bug: the exception's type and message, and what to do."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    message = " ".join(str(exc).split())
    return (
        f"{PROG}: internal error: {name}{': ' + message if message else ''} "
        "(a bug in proxyscope, not a problem with your input; rerun with --debug for the "
        "traceback, and please report it)"
    )


class Console:
    """Where a command writes: results to stdout, progress and warnings to stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.seen: set[str] = set()
        #: How a library message is said in the command's words (its flags).
        self.rewrite: Callable[[str], str] = lambda message: message

    @property
    def out(self) -> IO[str]:
        return sys.stdout

    @property
    def err(self) -> IO[str]:
        return sys.stderr

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def log(self, message: str) -> None:
        """One progress line with the elapsed time (suppressed by --quiet)."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.t0
            print(f"[{elapsed:6.1f}s] {message}", file=self.err, flush=True)

    def warn(self, message: str) -> None:
        """One warning line, each distinct message once."""
        key = "failed-fit" if "FAILED its convergence" in message else message
        if key in self.seen:
            return
        self.seen.add(key)
        text = self.rewrite(" ".join(message.split()))
        print(f"{PROG}: warning: {text}", file=self.err, flush=True)


#: What runs a command: its parsed arguments and the console in, the exit code out.
Handler = Callable[[argparse.Namespace, Console], int]


@contextlib.contextmanager
def warning_policy(console: Console) -> Iterator[None]:
    """Show proxyscope's warnings as one-line notes; silence third-party noise."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        console.warn(str(message))

    arviz_logger = logging.getLogger("arviz")
    level = arviz_logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", ProxyscopeWarning)
        warnings.showwarning = show
        arviz_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            arviz_logger.setLevel(level)


def write_json(path: str | os.PathLike[str], doc: Any) -> Path:
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return p


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return p


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def strict_code(args: argparse.Namespace, passed: bool, console: Console) -> int:
    """The exit code of a command whose fits ``passed`` (or not), as ``--strict`` asks."""
    if passed:
        return EXIT_OK
    if getattr(args, "strict", False):
        print(
            f"{PROG}: error: a fit failed its convergence diagnostics (--strict)",
            file=console.err,
        )
        return EXIT_UNCONVERGED
    return EXIT_OK
