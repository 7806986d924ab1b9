"""Specs on the command line: ``proxyscope spec`` (a spec in canonical form), the
spec that ``validate`` and ``summarize`` build from SPEC and the column flags, and
the one ``estimates`` builds from its flags.

Only :mod:`proxyscope.spec` is imported here (no data library), so ``proxyscope
spec`` starts at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxyscope.cli.arguments import pairs, split_names
from proxyscope.cli.console import EXIT_OK, Console, Handler, UsageError, write_text
from proxyscope.cli.flags import ESTIMATE_KEYS, ROLE_KEYS
from proxyscope.spec import apply_overrides, from_dict, load_spec, parse_value


def spec_from_args(args: argparse.Namespace) -> Any:
    """The spec of ``validate``/``summarize``: SPEC (with --set), role flags on top.

    Without SPEC the roles come from the flags alone and ``--data`` is required.
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
        roles.append((key, v))

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
