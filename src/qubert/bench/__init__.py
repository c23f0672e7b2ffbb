"""Experiment grids: data sets x modes x heads (with controls) x replicates, run in looks, decided and reported.

A bench config (YAML) names the grid; :func:`expand_grid` turns it into one :class:`RunSpec` per
training run (one per replicate: a fresh paired draw of training, validation and test rows and seed
r), :func:`run_bench` tunes every head, then runs the replicates look by look, testing every open
comparison after each look and stopping heads whose comparisons are decided (in process, or as Ray
tasks); it keeps ``results.csv`` and ``decisions.csv`` up to date and finally writes ``summary.md``
and figures. Data sets may be registry names, folders or explicit files (:mod:`qubert.bench.data`).

The config format is described in :mod:`qubert.bench.config`. One module per concept: ``config``
(format and checks), ``grid`` (expansion into runs), ``data`` (data entries, pools), ``replicates`` (paired draws),
``frozen`` (heads on cached features), ``looks`` (sequential looks, comparisons), ``predictions``
(per-example outputs), ``runner`` (execution, Ray), ``results``
(``results.csv``), ``stats`` (bootstrap, paired tests), ``report`` (``summary.md``), ``plots``.

Layout of an output directory::

    <output_dir>/bench_config.yaml        the resolved config (provenance)
    <output_dir>/results.csv              one row per finished run (rewritten atomically)
    <output_dir>/decisions.csv            one row per comparison: verdict, delta, CI, look
    <output_dir>/summary.md               mean +- std, bootstrap CIs, paired tests
    <output_dir>/figures/*.png
    <output_dir>/runs/<dataset>/<mode>/<head>/seed<r>/   replicate r: metrics.json, predictions.npz

Example:
    >>> from qubert.bench import load_bench_config, expand_grid
    >>> config = load_bench_config("configs/tiny.yaml")  # doctest: +SKIP
    >>> [spec.run_id for spec in expand_grid(config)][:2]  # doctest: +SKIP
    ['sms_spam/frozen/linear/seed0', 'sms_spam/frozen/linear/seed1']
"""

from qubert.bench.config import CONTROLS, BenchConfig, BenchConfigError, Resources, load_bench_config, parse_bench_config
from qubert.bench.grid import RunSpec, encoder_hidden_size, expand_grid
from qubert.bench.plots import plot_figures, read_history
from qubert.bench.report import write_summary
from qubert.bench.results import RESULT_COLUMNS, TIMING_COLUMNS, collect_results, is_finished
from qubert.bench.runner import BenchResult, execute_run, plan_bench, report_bench, run_bench
from qubert.bench.stats import PairedComparison, aggregate, bootstrap_ci, compare_heads, paired_comparison

__all__ = [
    "CONTROLS",
    "RESULT_COLUMNS",
    "TIMING_COLUMNS",
    "BenchConfig",
    "BenchConfigError",
    "BenchResult",
    "PairedComparison",
    "Resources",
    "RunSpec",
    "aggregate",
    "bootstrap_ci",
    "collect_results",
    "compare_heads",
    "encoder_hidden_size",
    "execute_run",
    "expand_grid",
    "is_finished",
    "load_bench_config",
    "paired_comparison",
    "parse_bench_config",
    "plan_bench",
    "plot_figures",
    "read_history",
    "report_bench",
    "run_bench",
    "write_summary",
]
