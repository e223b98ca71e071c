"""The ``autocompress`` command line.

Exit codes: 0 success; 1 a run failed (the message says why; stored work is kept);
2 a usage or configuration error (nothing was run or written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autocompress.errors import AutocompressError

EXAMPLES = {
    "search": "autocompress search experiments/fashion_mnist.yaml search.n_trials=40",
    "resume": "autocompress resume experiments/fashion_mnist.yaml",
    "status": "autocompress status runs/fmnist-refnet/study.journal",
    "validate": "autocompress validate experiments/fashion_mnist.yaml search_spaces/joint.yaml",
    "ls": "autocompress ls",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocompress",
        description="Search the measured Pareto front of compressed versions of a model.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(metavar="COMMAND")
    _command(
        sub,
        "search",
        "run (or resume) the search an experiment describes",
        _search,
        _experiment_args,
    )
    _command(
        sub,
        "resume",
        "continue a stopped search (the same as running search again)",
        _search,
        _experiment_args,
    )
    _command(
        sub,
        "status",
        "summarise a stored study: trials by state, the front",
        _status,
        _storage_args,
    )
    _command(
        sub,
        "validate",
        "check experiment / search-space YAML files without running",
        _validate,
        lambda p: p.add_argument("files", nargs="+", type=Path),
    )
    _command(
        sub,
        "ls",
        "list models, runtimes, samplers, shipped experiments and spaces",
        _ls,
        lambda p: None,
    )
    return parser


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    add_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_args(p)
    p.set_defaults(func=func)


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", type=Path, help="experiment YAML")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override experiment keys, e.g. search.n_trials=40",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")


def _storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("storage", help="journal file path, sqlite:/// or postgresql:// URL")
    p.add_argument(
        "--study", default=None, help="study name (needed if the storage holds several)"
    )


def _search(args: argparse.Namespace) -> int:
    from autocompress.front._table import format_front
    from autocompress.study import search

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


def _status(args: argparse.Namespace) -> int:
    from collections import Counter

    from autocompress.front._table import format_front
    from autocompress.study import load

    result = load(args.storage, args.study)
    counts = Counter(t.state.name for t in result.study.get_trials(deepcopy=False))
    print(
        f"study {result.study.study_name!r}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    )
    print(format_front(result.front))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from autocompress.config import SearchSpace, load_experiment, read_yaml

    for path in args.files:
        data = read_yaml(path)
        if "layers" in data:
            SearchSpace.from_yaml(path)
            print(f"{path}: search space OK")
        else:
            config = load_experiment(path)
            SearchSpace.from_yaml(config.space_path)
            print(f"{path}: experiment OK (space {config.space_path})")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from autocompress.models import available_models
    from autocompress.runtimes import available_runtimes

    print("models:   " + ", ".join(available_models()))
    print("runtimes: " + ", ".join(available_runtimes()))
    print("samplers: nsga2, tpe, random, gp")
    for folder in ("experiments", "search_spaces"):
        files = sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []
        if files:
            print(f"{folder}: " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
