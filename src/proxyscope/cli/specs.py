"""Specs on the command line: ``proxyscope spec`` (a spec in canonical form), and
the spec that ``validate`` and ``summarize`` build from SPEC and the column flags.

Only :mod:`proxyscope.spec` is imported here (no data library), so ``proxyscope
spec`` starts at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxyscope.cli.arguments import pairs, split_names
from proxyscope.cli.console import EXIT_OK, Console, Handler, UsageError, write_text
from proxyscope.spec import apply_overrides, from_dict, load_spec, parse_value


def spec_from_args(args: argparse.Namespace) -> Any:
    """The spec of ``validate``/``summarize``: SPEC (with --set), role flags on top.

    Without SPEC the roles come from the flags alone and ``--data`` is required.
    """
    roles: list[tuple[str, Any]] = []
    for flag, key in (
        ("experiment", "columns.experiment"),
        ("treatment", "columns.treatment"),
        ("outcome", "columns.outcome"),
    ):
        v = getattr(args, flag)
        if v is not None:
            roles.append((key, v))
    if args.treated_value is not None:
        roles.append(("columns.treated_value", parse_value(args.treated_value)))
    if args.proxies:
        roles.append(("columns.proxies", split_names(args.proxies)))
    if args.segments is not None:
        roles.append(("columns.segments", split_names(args.segments)))
    if args.direction:
        roles.append(
            ("columns.directions", pairs(args.direction, flag="--direction", number=False))
        )
    if args.engine is not None:
        roles.append(("data.engine", args.engine))
    if args.min_users_per_arm is not None:
        roles.append(("data.min_users_per_arm", args.min_users_per_arm))
    if args.dropna:
        roles.append(("data.dropna", True))

    if args.spec is not None:
        return load_spec(args.spec, overrides=[*args.set, *roles])
    if args.data is None:
        raise UsageError("give a SPEC file, or --data with the column flags")
    needed = [f for f in ("experiment", "treatment", "outcome") if getattr(args, f) is None]
    if not args.proxies:
        needed.append("proxies")
    if needed:
        raise UsageError(
            "without a SPEC file these options are required: " + ", ".join(f"--{n}" for n in needed)
        )
    raw: dict[str, Any] = {"name": "command-line", "data": {"kind": "users", "path": "-"}}
    for key, value in roles:
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    raw = apply_overrides(raw, args.set, origin="options")
    return from_dict(raw, origin="options")


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
