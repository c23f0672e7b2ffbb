"""``qubert bench``: run an experiment grid from a YAML config and report whether the quantum head helps.

Mount it in the main CLI either as a sub-app (``app.add_typer(bench_app, name="bench")``) or as a
command (``app.command("bench")(bench)``); both give the same options.

Example:
    $ qubert bench --config configs/quick.yaml                 # sequential, in process
    $ qubert bench --config configs/paper.yaml --ray           # Ray tasks on a local Ray
    $ qubert bench --config configs/paper.yaml --ray-address auto --output-dir /shared/bench
    $ qubert bench --config configs/quick.yaml --dry-run       # list finished / pending runs
    $ qubert bench --config configs/quick.yaml --report-only   # rebuild csv, summary and figures
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["bench", "bench_app"]

_console = Console(highlight=False, soft_wrap=True)
_error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _error_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def bench(
    config: Path = typer.Option(..., "--config", "-c", help="Bench config (YAML), e.g. configs/quick.yaml."),
    ray: bool = typer.Option(False, "--ray", help="Run every training run as a Ray task (local Ray unless --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (e.g. 'auto' or ray://host:10001); implies --ray."),
    ray_num_cpus: Optional[int] = typer.Option(None, "--ray-num-cpus", min=1, help="CPUs of a locally started Ray (default: all)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Overrides the config's output_dir."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides the config's data_dir."),
    online: Optional[bool] = typer.Option(None, "--online/--offline", help="Pick the online/offline alternatives of the config (default: detect)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the grid's runs (finished / to run) and exit."),
    report_only: bool = typer.Option(False, "--report-only", help="Rebuild results.csv, summary.md and figures from finished runs; train nothing."),
) -> None:
    """Tune every head with the same budget, then run data sets x modes x heads (with controls) in
    replicates (fresh paired data draws and seeds) that arrive in looks; after each look every open
    comparison is tested sequentially and decided heads stop. Resumes where it stopped.

    Writes tuning.csv (every trial), results.csv (one row per replicate run), decisions.csv (one
    verdict per comparison: better, worse, equivalent within the margin, or inconclusive),
    summary.md and figures under the output directory, then prints the verdicts. Exit code 0 when
    every run finished, 1 when some runs failed, 2 for a bad config.
    """
    from qubert import bench as bench_lib

    if dry_run and report_only:
        raise _fail("--dry-run and --report-only exclude each other")
    try:
        cfg = bench_lib.load_bench_config(config, output_dir=output_dir, data_dir=data_dir, online=online)
        if dry_run:
            from qubert.bench.runner import tuned_specs

            specs = tuned_specs(cfg)
            done, pending = bench_lib.plan_bench(cfg, _specs=specs)
            _console.print(f"{cfg.name}: at most {len(specs)} runs ({len(cfg.seeds)} replicates in looks "
                           f"{', '.join(map(str, cfg.looks))}; decided heads stop early) -> {cfg.output_dir}")
            finished = {s.run_id for s in done}
            for spec in specs:
                state = "[green]done[/green]" if spec.run_id in finished else "todo"
                _console.print(f"  {state}  {escape(spec.run_id)}")
            heads = {(s.dataset, s.mode, s.head) for s in specs if s.search}
            if heads:
                _console.print(f"tuning: {len(heads)} heads x {cfg.tuning.trials} trials on validation macro-F1 "
                               "(finished trials are reused)")
            _console.print(f"{len(done)} finished, {len(pending)} to run")
            return
        def log(line: str) -> None:
            _console.print(escape(line))

        if report_only:
            result = bench_lib.report_bench(cfg, log=log)
        else:
            result = bench_lib.run_bench(cfg, use_ray=ray, ray_address=ray_address, ray_num_cpus=ray_num_cpus, log=log)
    except (bench_lib.BenchConfigError, OSError) as err:  # OSError: an unwritable output directory
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted: finished runs are kept; rerun the same command to resume", code=130) from None
    if not len(result.results):
        _console.print("no finished runs yet")
    else:
        _print_verdicts(cfg)
    if result.failed:
        where = f"listed in {result.summary}" if result.summary is not None else "listed above; no run finished, so no summary was written"
        raise _fail(f"{len(result.failed)} run(s) failed ({where}); rerun to retry them", code=1)


def _print_verdicts(cfg) -> None:
    """The decisions table (``decisions.csv``) as the command's last words."""
    import pandas as pd
    from qubert.bench.looks import DECISIONS_FILE

    path = cfg.output_dir / DECISIONS_FILE
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        _console.print("no comparisons were tested (no quantum head, or no look finished)")
        return
    shown = pd.DataFrame({
        "dataset": table["dataset"], "head": table["head"], "reference": table["reference"], "kind": table["kind"],
        "family": table["family"],
        "delta": ["–" if pd.isna(v) else f"{v:+.3f}" for v in table["delta"]],
        "CI": ["–" if pd.isna(lo) else f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "n": table["n"],
        "verdict": [f"{v}" + ("" if d or f else " (open)") for v, d, f in zip(table["verdict"], table["decided"], table["final"])],
    })
    # Plain text, never cut to the terminal's width (a table of names must stay readable in a log).
    _console.print(f"Verdicts (delta = head - reference, test macro-F1, margin ±{cfg.statistics['margin']:g}):")
    _console.print(escape(shown.to_string(index=False)), soft_wrap=True)
    confirmatory = table[table["family"] == "confirmatory"]
    _console.print(f"{int(confirmatory['decided'].sum())} of {len(confirmatory)} confirmatory comparisons decided; "
                   f"details in {path}")


bench_app = typer.Typer(
    name="bench",
    help="Run an experiment grid from a YAML config and report whether the quantum head helps.",
    add_completion=False,
    no_args_is_help=True,
)
bench_app.callback(invoke_without_command=True)(bench)
