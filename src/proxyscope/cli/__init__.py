"""The ``proxyscope`` command line.

Subcommands: ``demo`` (the main job on a simulated world), ``run`` (a model
spec end to end), ``validate`` (data against a spec, no fitting), ``spec``
(a spec in canonical form), and for step-by-step use ``summarize`` (or
``estimates``, for estimates made elsewhere), ``fit``,
``report``, ``transport``, ``compare``, ``weights``, ``stability`` (a fit whose
relation moves over time) and ``rolling-backtest`` (the model over time against the
static one, on the experiments after each origin). ``proxyscope CMD
--help`` documents each.

Exit codes: 0 success; 2 bad input or spec: proxyscope's own errors, command-line
usage errors, and a file named on the line that is missing, unreadable or a
directory (one line on stderr, ``proxyscope: error: ...``); 3 a fit that failed
its convergence diagnostics, with ``--strict``; 1 anything else, which is a bug
(one line on stderr, ``proxyscope: internal error: ...``, naming the exception).
No traceback is shown unless ``--debug`` (anywhere on the line) or
``PROXYSCOPE_DEBUG=1`` asks for it.

Results go to stdout; progress and warnings to stderr.

The command line is put together in modules beside this one: ``parser`` (the
argparse parser; the options of the commands on data in ``data_flags``),
``console`` (output, warnings, exit codes), ``arguments`` and ``specs`` (values
and specs from the command line), and the commands:
``run_commands`` (demo, run), ``specs`` (spec), ``data_commands`` (validate,
summarize, estimates), ``fit_commands`` (fit, report, transport, compare, weights) and
``time_commands`` (stability, rolling-backtest; the options about time are in
``time_flags``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from proxyscope.cli.arguments import check_outputs
from proxyscope.cli.console import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    PROG,
    Console,
    Handler,
    UsageError,
    internal_error,
    is_input_error,
    one_line,
    warning_policy,
)
from proxyscope.cli.flags import SPEC_KEYS, as_flags, command_flags
from proxyscope.cli.parser import build_parser
from proxyscope.errors import ProxyscopeError

__all__ = ["build_parser", "main"]


def handler(command: str) -> Handler:
    """The function that runs ``command``.

    Its module is imported only now, each group of commands apart: ``--help``
    loads no pandas, and ``spec``, ``validate`` and ``summarize`` no PyMC.
    """
    if command in ("demo", "run"):
        from proxyscope.cli.run_commands import COMMANDS
    elif command == "spec":
        from proxyscope.cli.specs import COMMANDS
    elif command in ("validate", "summarize", "estimates"):
        from proxyscope.cli.data_commands import COMMANDS
    elif command in ("stability", "rolling-backtest"):
        from proxyscope.cli.time_commands import COMMANDS
    else:
        from proxyscope.cli.fit_commands import COMMANDS
    return COMMANDS[command]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args_list = [
        os.fspath(a) if isinstance(a, os.PathLike) else a
        for a in (sys.argv[1:] if argv is None else argv)
    ]
    # --debug is accepted anywhere on the line, and as PROXYSCOPE_DEBUG=1.
    debug = "--debug" in args_list or os.environ.get("PROXYSCOPE_DEBUG", "") not in ("", "0")
    args_list = [a for a in args_list if a != "--debug"]
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except SystemExit as exc:  # --help and --version
        return int(exc.code) if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stdout)
        return EXIT_INPUT
    console = Console(quiet=getattr(args, "quiet", False))
    flags = command_flags(parser, args.command)
    spec_keys = SPEC_KEYS.get(args.command, {})
    console.rewrite = lambda message: as_flags(message, flags, spec_keys)
    with warning_policy(console):
        try:
            check_outputs(args, flags)
            return int(handler(args.command)(args, console))
        except UsageError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # every exception ends here as one line and an exit code
            if debug:
                raise
            if not is_input_error(exc):
                print(internal_error(exc), file=sys.stderr)
                return EXIT_INTERNAL
            message = one_line(exc)
            if isinstance(exc, ProxyscopeError):  # said with the flags the user typed
                message = console.rewrite(message)
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
