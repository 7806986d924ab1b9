"""The commands that execute a whole spec: ``demo`` (the embedded spec of a
simulated world) and ``run`` (a spec file)."""

from __future__ import annotations

import argparse
from typing import Any

from proxyscope.cli.arguments import output_dir
from proxyscope.cli.console import Console, Handler, strict_code
from proxyscope.cli.flags import DEMO_KEYS
from proxyscope.run.demo import DEMO_COMPARE, DEMO_OUT, demo_spec
from proxyscope.run.execute import run_spec
from proxyscope.run.text import run_text
from proxyscope.spec import apply_overrides, from_dict, load_spec


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    base = demo_spec()
    changes: list[Any] = list(args.set)
    for flag, key in DEMO_KEYS.items():
        v = getattr(args, flag)
        if v is not None:
            changes.append((key, v))
    raw = apply_overrides(base.to_dict(), changes, origin="demo")
    if args.compare:
        raw.setdefault("analysis", {})["compare"] = dict(DEMO_COMPARE)
    spec = from_dict(raw, origin="demo")
    out = output_dir(args.out or DEMO_OUT, "--out")
    console.log(f"proxyscope demo: writing into {out}/")
    result = run_spec(spec, out=out, progress=not console.quiet, log=console.log)
    console.print(run_text(result))
    return strict_code(args, result.passed, console)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    spec = load_spec(args.spec, overrides=args.set)
    where = "--out" if args.out else "[report].out" if spec.report.out else "the output directory"
    out = output_dir(args.out or spec.report.out or f"proxyscope-{spec.name}", where)
    console.log(f"running {args.spec} into {out}/")
    result = run_spec(spec, out=out, data=args.data, progress=not console.quiet, log=console.log)
    console.print(run_text(result))
    return strict_code(args, result.passed, console)


COMMANDS: dict[str, Handler] = {"demo": cmd_demo, "run": cmd_run}
