"""Hostile-input testing: how an entry point answered, judged and counted.

Every property-based test of an entry point that takes user input calls
:func:`judge` with the call, whether the input was valid, the names a clear
error must mention, and (for valid input) an independent check of the answer.
Each call is one of five outcomes:

- ``clear``: invalid input, one of proxyscope's own errors naming a parameter
  or column it was told about;
- ``correct``: valid input, the answer passes the independent check;
- ``unclear``: one of proxyscope's errors that names none of them (a defect);
- ``traceback``: any other exception (a defect);
- ``silent``: invalid input answered, or valid input answered wrongly (a defect).

The first two pass; the rest fail the test with the input in the message.
With ``PROXYSCOPE_FUZZ_LOG=<file>`` every outcome is also appended to that file
as one JSON line (entry point, outcome), which ``benchmarks/fuzz.py`` counts.

Hypothesis profiles: ``ci`` (the default: few examples, so ``make test`` stays
fast) and ``fuzz`` (many examples; ``benchmarks/fuzz.py`` selects it with
``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, settings

from proxyscope.errors import ProxyscopeError

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("PROXYSCOPE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

OUTCOMES = ("clear", "correct", "unclear", "traceback", "silent")


class FuzzDefect(AssertionError):
    """An entry point answered hostile input in a way it must not."""


def _record(entry: str, outcome: str) -> None:
    path = os.environ.get("PROXYSCOPE_FUZZ_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"entry": entry, "outcome": outcome}) + "\n")


def judge(
    entry: str,
    call: Callable[[], Any],
    *,
    valid: bool,
    names: Iterable[str] = (),
    check: Callable[[Any], bool | None] | None = None,
    detail: Any = None,
) -> Any:
    """Run ``call`` and judge its answer; return the answer (None after a clear error).

    ``names``: for invalid input, the parameter or column names of which the
    error must mention at least one (case-sensitive substring). ``check``: for
    valid input, a function of the answer that returns False (or raises
    AssertionError) when the answer is wrong. ``detail`` is shown on failure.
    """
    wanted = [str(n) for n in names]
    try:
        result = call()
    except ProxyscopeError as exc:
        message = str(exc)
        if valid:
            _record(entry, "silent")
            raise FuzzDefect(f"{entry}: valid input refused: {message} [{detail!r}]") from exc
        if wanted and not any(n in message for n in wanted):
            _record(entry, "unclear")
            raise FuzzDefect(
                f"{entry}: the error names none of {wanted}: {message} [{detail!r}]"
            ) from exc
        _record(entry, "clear")
        return None
    except Exception as exc:  # anything that is not proxyscope's own error is a defect
        _record(entry, "traceback")
        raise FuzzDefect(
            f"{entry}: {type(exc).__module__}.{type(exc).__name__}: {exc} [{detail!r}]"
        ) from exc
    if not valid:
        _record(entry, "silent")
        raise FuzzDefect(f"{entry}: invalid input answered without an error [{detail!r}]")
    if check is not None:
        try:
            ok = check(result)
        except AssertionError as exc:
            _record(entry, "silent")
            raise FuzzDefect(f"{entry}: wrong answer: {exc} [{detail!r}]") from exc
        if ok is False:
            _record(entry, "silent")
            raise FuzzDefect(f"{entry}: wrong answer [{detail!r}]")
    _record(entry, "correct")
    return result
