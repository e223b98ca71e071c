"""The ``autocompress`` command line.

Exit codes: 0 success; 1 a run failed (the message says why; stored work is kept);
2 a usage or configuration error (nothing was run or written).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autocompress.errors import AutocompressError

ArgsAdder = Callable[[argparse.ArgumentParser], object]

EXAMPLES = {
    "search": "autocompress search experiments/fashion_mnist.yaml search.n_trials=40",
    "resume": "autocompress resume experiments/fashion_mnist.yaml",
    "refine": "autocompress refine experiments/fashion_mnist.yaml --trials 12 30 --steps 1000",
    "status": "autocompress status runs/fmnist-refnet/study.journal",
    "report": "autocompress report runs/fmnist-refnet/study.journal -o report.html --png",
    "pick": "autocompress pick runs/fmnist-refnet/study.journal --max-latency-ms 0.3 "
    "--min-accuracy 0.90 --prefer size",
    "export": "autocompress export runs/fmnist-refnet/study.journal exported/ --prefer knee",
    "verify": "autocompress verify runs/fmnist-refnet/study.journal   (or: autocompress verify "
    "exported/)",
    "dashboard": "autocompress dashboard runs/fmnist-refnet/study.journal --port 8080",
    "validate": "autocompress validate experiments/fashion_mnist.yaml search_spaces/joint.yaml",
    "ls": "autocompress ls",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log, before = logging.getLogger("autocompress"), logging.getLogger("autocompress").level
    log.setLevel(logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    log.addHandler(handler := logging.StreamHandler(sys.stderr))  # progress: its own output
    try:
        return int(args.func(args) or 0)
    except AutocompressError as exc:
        print(f"autocompress: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "autocompress: interrupted; finished trials are stored, run the same command to "
            "resume",
            file=sys.stderr,
        )
        return 130
    finally:  # in-process callers (tests, notebooks) get logging back as it was
        log.removeHandler(handler)
        log.setLevel(before)


def _verbosity(p: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """``-q``/``-v`` before or after the verb (a verb's SUPPRESS keeps the value before it)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", default=default, help="errors only")
    g.add_argument("-v", "--verbose", action="store_true", default=default, help="debug too")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocompress",
        description="Search the measured Pareto front of compressed versions of a model.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _verbosity(parser, False)
    sub = parser.add_subparsers(metavar="COMMAND")
    commands: list[tuple[str, str, Callable[[argparse.Namespace], int], ArgsAdder]] = [
        (
            "search",
            "run (or resume) the search an experiment describes",
            _search,
            _experiment_args,
        ),
        ("resume", "continue a stopped search (as search does)", _search, _experiment_args),
        (
            "refine",
            "promote chosen plans to a longer fine-tuning budget (new trials, same study)",
            _refine,
            _refine_args,
        ),
        (
            "status",
            "summarise a stored study: trials by state, the front",
            _status,
            _with_json(_storage_args),
        ),
        (
            "report",
            "write a standalone HTML report of a study (plots of the front, history, table)",
            _report,
            _report_args,
        ),
        (
            "pick",
            "choose one model of the front by budget and preference",
            _pick,
            _with_json(_pick_args),
        ),
        (
            "export",
            "write a picked model as a self-contained deployable plus manifest.json",
            _export,
            _export_args,
        ),
        (
            "verify",
            "re-measure test accuracy and latency of the front (or of an export directory)",
            _verify,
            _verify_args,
        ),
        (
            "dashboard",
            "browse a study in optuna-dashboard (on 127.0.0.1 unless --host says otherwise)",
            _dashboard,
            _dashboard_args,
        ),
        (
            "validate",
            "check experiment / search-space YAML files (and key.sub=value overrides)",
            _validate,
            lambda p: p.add_argument("files", nargs="+", metavar="FILE|key.sub=value"),
        ),
        ("ls", "list models, runtimes, samplers, experiments, spaces", _ls, lambda p: None),
    ]
    for name, help_text, func, add_args in commands:
        _command(sub, name, help_text, func, add_args)
    return parser


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    add_args: ArgsAdder,
) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_args(p)
    _verbosity(p)
    p.set_defaults(func=func)


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", type=Path, help="experiment YAML")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override experiment keys, e.g. search.n_trials=40",
    )


def _refine_args(p: argparse.ArgumentParser) -> None:
    _experiment_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trials", type=int, nargs="+", help="trial numbers to promote")
    which.add_argument(
        "--members", type=int, default=None, help="the K best front members (default 3)"
    )
    p.add_argument("--steps", type=int, default=None, help="budget (default the top rung)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="SGD rate (default finetune.lr; finetune.plain_lr for the plain baselines)",
    )


def _storage_args(p: argparse.ArgumentParser, run_dir: bool = True) -> None:
    p.add_argument("storage", help="journal file path, sqlite:/// or postgresql:// URL")
    p.add_argument(
        "--study", default=None, help="study name (needed if the storage holds several)"
    )
    if run_dir:  # every verb that reads the trials' artifacts
        p.add_argument("--run-dir", type=Path, default=None, help="the run directory, if moved")


def _with_json(add_args: ArgsAdder) -> ArgsAdder:
    """``add_args`` and ``--json``: the result as JSON on stdout instead of text."""
    flag = {"action": "store_true", "help": "print JSON instead of text"}
    return lambda p: (add_args(p), p.add_argument("--json", **flag))  # type: ignore[arg-type]


def _pick_args(p: argparse.ArgumentParser, with_storage: bool = True) -> None:
    if with_storage:
        _storage_args(p)
    g = p.add_argument_group("which model (default: the most accurate that fits; see --prefer)")
    g.add_argument(
        "--trial", type=int, default=None, help="one trial number (takes one model, not several)"
    )
    g.add_argument("--max-latency-ms", type=float, default=None)
    g.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help="fraction (0.9) or percent (90); 1 means 100%%",
    )
    g.add_argument("--max-size-kb", type=float, default=None)
    g.add_argument(
        "--prefer",
        default="accuracy",
        choices=["accuracy", "latency", "size", "knee"],
        help="best by this among the members that fit (default accuracy)",
    )
    g.add_argument("--any-rung", action="store_true", help="not only top-rung members")


def _export_args(p: argparse.ArgumentParser) -> None:
    _storage_args(p)
    p.add_argument("out", type=Path, help="directory to write model file + manifest.json into")
    _pick_args(p, with_storage=False)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export there")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a study storage (verifies the front) or an export directory")
    p.add_argument("--study", default=None, help="study name (if the storage holds several)")
    p.add_argument("--trial", type=int, action="append", help="only these trials (repeatable)")
    p.add_argument("--run-dir", type=Path, default=None, help="the run directory, if moved")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")


def _report_args(p: argparse.ArgumentParser) -> None:
    _storage_args(p)
    p.add_argument("-o", "--out", type=Path, default=None, help="default <run_dir>/report.html")
    p.add_argument("--png", action="store_true", help="also PNGs of each figure (needs Chrome)")
    p.add_argument(
        "--trial", type=int, default=None, help="plan chart of this trial (default knee)"
    )


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    _storage_args(p, run_dir=False)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback)")
    p.add_argument("--port", type=int, default=8080)


def _pick_request(args: argparse.Namespace) -> dict:
    size = None if args.max_size_kb is None else args.max_size_kb * 1e3
    return {
        "number": args.trial,
        "max_latency_ms": args.max_latency_ms,
        "min_accuracy": args.min_accuracy,  # fraction or percent: front.accuracy_fraction
        "max_size_bytes": size,
        "prefer": args.prefer,
        "any_rung": args.any_rung,
    }


def _picked(args: argparse.Namespace) -> tuple:
    """The study, its front and the picked member; a warning on stderr below the floor."""
    from autocompress._api import load
    from autocompress.front import infeasible_warning

    result = load(args.storage, args.study, args.run_dir)
    member = result.front.pick(**_pick_request(args))
    if warning := infeasible_warning(member, result.front):
        print(warning, file=sys.stderr)
    return result, result.front, member


def _pick(args: argparse.Namespace) -> int:
    from autocompress._cli_verbs import pick

    result, _, member = _picked(args)
    return pick(result, member, as_json=args.json)


def _export(args: argparse.Namespace) -> int:
    from autocompress.deploy import describe_export, export
    from autocompress.front import describe_row

    result, front, member = _picked(args)
    manifest = export(
        result.study, member, args.out, overwrite=args.overwrite, run_dir=result.run_dir
    )
    print(f"exported {describe_row(member, front)}\n{describe_export(manifest)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from autocompress._api import load
    from autocompress.deploy import candidate_of_export, format_verified, write_verified
    from autocompress.deploy import verify as run_verify

    source = Path(args.source)
    if source.is_dir() and (source / "manifest.json").exists():
        task, candidate = candidate_of_export(source)
        rows, reference_test = run_verify(task, [candidate])
    else:
        result = load(args.source, args.study, args.run_dir)
        rows, reference_test = result.verify(args.trial)  # also <run_dir>/verified.json
    print(format_verified(rows, reference_test))
    if args.json is not None:
        write_verified(args.json, rows, reference_test)
    return 0


def _report(args: argparse.Namespace) -> int:
    from autocompress._api import load

    result = load(args.storage, args.study, args.run_dir)
    for path in result.report(args.out, png=args.png, trial=args.trial):
        print(f"written {path}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from autocompress.deploy import serve

    serve(args.storage, host=args.host, port=args.port)
    return 0


def _search(args: argparse.Namespace) -> int:
    from autocompress._api import search
    from autocompress.front import format_front

    result = search(args.experiment, overrides=args.overrides, progress=not args.quiet)
    front = result.front
    print(
        f"\nPareto front ({len(front.members)} of {len(front.completed)} completed trials; "
        f"hypervolume {front.hypervolume():.4f}):"
    )
    print(format_front(front))
    print(
        f"\nresults: {result.run_dir / 'front.json'} (front), {result.run_dir / 'trials'} "
        "(deployables, plans, measurements)"
    )
    return 0


def _refine(args: argparse.Namespace) -> int:
    from autocompress._cli_verbs import refine

    return refine(args)


def _status(args: argparse.Namespace) -> int:
    from autocompress._api import load
    from autocompress._cli_verbs import status

    return status(load(args.storage, args.study, args.run_dir), as_json=args.json)


def _validate(args: argparse.Namespace) -> int:
    from autocompress._cli_verbs import validate

    return validate(args.files)


def _ls(args: argparse.Namespace) -> int:
    from autocompress.models import available_models
    from autocompress.runtimes import available_runtimes

    print("models:   " + ", ".join(available_models()))
    print("runtimes: " + ", ".join(available_runtimes()))
    print("samplers: tpe (default), nsga2, random, gp")
    for folder in ("experiments", "search_spaces"):
        files = sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []
        if files:
            print(f"{folder}: " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
