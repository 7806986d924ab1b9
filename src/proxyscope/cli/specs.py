"""Specs on the command line: ``proxyscope spec`` (a spec in canonical form), the
spec that ``validate`` and ``summarize`` build from SPEC and the column flags, and
the one ``estimates`` builds from its flags.

Only :mod:`proxyscope.spec` is imported here (no data library), so ``proxyscope
spec`` starts at once.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from proxyscope.cli.arguments import pairs, split_names
from proxyscope.cli.console import EXIT_OK, Console, Handler, UsageError, write_text
from proxyscope.cli.flags import DESIGN_FLAGS, ESTIMATE_KEYS, ROLE_KEYS
from proxyscope.errors import ProxyscopeError
from proxyscope.spec import ROW_DESIGNS, apply_overrides, from_dict, load_spec, parse_value
from proxyscope.spec.parse_design import REQUIRED


def spec_from_args(args: argparse.Namespace) -> Any:
    """The spec of ``validate``/``summarize``: SPEC (with --set), role flags on top.

    Without SPEC the roles come from the flags alone and ``--data`` is required. The
    design options go into ``[data.<design>]`` of ``--design`` (or of SPEC's design).
    """
    roles: list[tuple[str, Any]] = []
    for flag, key in ROLE_KEYS.items():
        v = getattr(args, flag)
        if v is None or v is False or v == []:
            continue
        if flag == "treated_value":
            v = parse_value(v)
        elif flag in ("proxies", "segments"):
            v = split_names(v)
        elif flag == "direction":
            v = pairs(v, flag="--direction", number=False)
        elif flag == "exposure_value":
            v = {
                k: parse_value(x)
                for k, x in pairs(v, flag="--exposure-value", number=False).items()
            }
        elif flag == "time_period":
            v = time_period(v)
        roles.append((key, v))

    design = args.design if args.design is not None else _spec_design(args)
    roles += design_roles(args, design)
    if args.spec is not None:
        return load_spec(args.spec, overrides=[*args.set, *roles])
    if args.data is None:
        raise UsageError("give a SPEC file, or --data with the column flags")
    armless = design in ROW_DESIGNS and design != "ipw"
    needed = [
        f
        for f in ("experiment", *(() if armless else ("treatment",)), "outcome")
        if getattr(args, f) is None
    ]
    if not args.proxies:
        needed.append("proxies")
    if design in ROW_DESIGNS:
        needed += [k for k in REQUIRED[design] if getattr(args, k) in (None, [])]
    if needed:
        raise UsageError(
            "without a SPEC file these options are required"
            + (f" (with --design {design})" if design in ROW_DESIGNS else "")
            + ": "
            + ", ".join(_flag(n) for n in needed)
        )
    raw: dict[str, Any] = {"name": "command-line", "data": {"kind": "users", "path": "-"}}
    raw = apply_overrides(raw, [*roles, *args.set], origin="options")
    return from_dict(raw, origin="options")


def design_roles(args: argparse.Namespace, design: str | None) -> list[tuple[str, Any]]:
    """The design options given, as ``[data.<design>]`` keys; an option of another design
    (or one given without a design that reads rows) is a usage error."""
    given = [d for d in DESIGN_FLAGS if getattr(args, d) not in (None, [])]
    if not given:
        return []
    takes = DESIGN_FLAGS[given[0]]
    if design not in ROW_DESIGNS:
        raise UsageError(
            f"{_flag(given[0])} is an option of --design "
            + " or ".join(takes)
            + (
                "; give --design (or [data] design in the spec)"
                if design is None
                else f", not of design {design!r}"
            )
        )
    out: list[tuple[str, Any]] = []
    for dest in given:
        if design not in DESIGN_FLAGS[dest]:
            raise UsageError(
                f"{_flag(dest)} is an option of --design "
                + " or ".join(DESIGN_FLAGS[dest])
                + f", not of design {design!r}"
            )
        v = getattr(args, dest)
        if dest in ("covariates", "fit_metric"):
            v = split_names(v)
            if dest == "fit_metric" and len(v) == 1:
                v = v[0]
        elif dest not in TEXT_OPTIONS:
            v = parse_value(v)  # a number (or, for cutoff and treatment_start, a column)
        out.append((f"data.{design}.{dest}", v))
    return out


#: The design options that always hold text (column names and choices): never read
#: as TOML, so a column named "2024" stays a name.
TEXT_OPTIONS = (
    "unit",
    "period",
    "first_treated",
    "control",
    "running",
    "kernel",
    "estimand",
    "treated",
)


def time_period(text: str) -> Any:
    """``--time-period``: a period's name, or comma-separated bin edges (each read as TOML,
    so ``2025-01-01`` is a date and ``10`` a number; the spec checks them)."""
    if "," not in text:
        return text.strip()
    return [parse_value(x) for x in text.split(",") if x.strip()]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _spec_design(args: argparse.Namespace) -> str | None:
    """The ``[data] design`` of SPEC (with --set), read leniently: a spec that cannot be
    read says why when it is loaded."""
    if args.spec is None:
        return None
    try:
        raw = tomllib.loads(Path(args.spec).read_text(encoding="utf-8"))
        data = apply_overrides(raw, args.set).get("data")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ProxyscopeError):
        return None
    design = data.get("design") if isinstance(data, dict) else None
    return design if isinstance(design, str) else None


def estimates_spec(args: argparse.Namespace) -> Any:
    """The spec of ``estimates``: kind = "estimates" with the roles of the flags."""
    data: dict[str, Any] = {"kind": "estimates", "path": args.table}
    columns: dict[str, Any] = {}
    for flag, key in ESTIMATE_KEYS.items():
        v = getattr(args, flag)
        if v is None or v == []:
            continue
        if flag in ("proxies", "segments"):
            v = split_names(v)
        elif flag == "direction":
            v = pairs(v, flag="--direction", number=False)
        elif flag == "time_period":
            v = time_period(v)
        section, name = key.split(".")
        (data if section == "data" else columns)[name] = v
    return from_dict({"name": "command-line", "data": data, "columns": columns}, origin="options")


def cmd_spec(args: argparse.Namespace, console: Console) -> int:
    spec = load_spec(args.spec, overrides=args.set)
    text = spec.dumps()
    if args.output:
        write_text(args.output, text)
        console.log(f"wrote {args.output}")
    else:
        console.out.write(text)
    return EXIT_OK


COMMANDS: dict[str, Handler] = {"spec": cmd_spec}
