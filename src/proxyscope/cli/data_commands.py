"""The commands on data, no model: ``validate`` (data checked against a spec),
``summarize`` (data into a cells file) and ``estimates`` (estimates made
elsewhere into a cells file).

They import pandas, never PyMC.
"""

from __future__ import annotations

import argparse

from proxyscope.cli.console import (
    EXIT_INPUT,
    EXIT_OK,
    PROG,
    Console,
    Handler,
    write_json,
)
from proxyscope.cli.specs import estimates_spec, spec_from_args
from proxyscope.run.check import check_data, result_lines
from proxyscope.run.load import load_effects


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    spec = spec_from_args(args)
    console.log(f"checking the data of {spec.origin}")
    result = check_data(spec, data=args.data)
    for line in result_lines(result):
        console.print(line)
    if args.json:
        write_json(args.json, result.to_dict())
    if not result.ok:
        n = len(result.problems)
        print(
            f"{PROG}: error: the data do not match the spec: {n} problem{'s' if n != 1 else ''} "
            f"in {result.source} (listed above)",
            file=console.err,
        )
        return EXIT_INPUT
    return EXIT_OK


def cmd_summarize(args: argparse.Namespace, console: Console) -> int:
    spec = spec_from_args(args)
    effects = load_effects(spec, data=args.data, log=console.log).effects
    path = effects.save(args.output)
    console.print(repr(effects))
    console.print(f"Saved {effects.n_cells} cells to {path}.")
    return EXIT_OK


def cmd_estimates(args: argparse.Namespace, console: Console) -> int:
    spec = estimates_spec(args)
    effects = load_effects(spec, log=console.log).effects
    path = effects.save(args.output)
    console.print(repr(effects))
    console.print(f"Saved {effects.n_cells} cells to {path}.")
    return EXIT_OK


COMMANDS: dict[str, Handler] = {
    "validate": cmd_validate,
    "summarize": cmd_summarize,
    "estimates": cmd_estimates,
}
