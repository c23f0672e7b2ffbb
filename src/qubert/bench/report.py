"""``summary.md``: the tables and verdicts of a finished grid."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qubert.bench.config import BenchConfig
from qubert.bench.results import _write_text_atomic
from qubert.bench.stats import aggregate, compare_heads

SUMMARY_FILE = "summary.md"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def _fmt_p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def write_summary(results: Any, path: str | os.PathLike[str], *, config: BenchConfig | None = None,
                  figures: Sequence[Path] = (), failed: Mapping[str, str] | None = None,
                  n_planned: int | None = None) -> Path:
    """Write ``summary.md``: per data set and mode, each head's macro-F1 over seeds (mean +- std,
    bootstrap CI), the paired comparison with the best classical head, and each quantum head
    against its controls.

    Example:
        >>> write_summary(pd.read_csv("results.csv"), "summary.md")  # doctest: +SKIP
    """
    stats_opts = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0, **(config.statistics if config else {})}
    conf = round(stats_opts["confidence"] * 100)
    path = Path(path)
    table = aggregate(results, **stats_opts)
    comparisons = compare_heads(results, **stats_opts)
    seeds = sorted(int(s) for s in results["seed"].unique())
    n = len(seeds)
    lines = [f"# Bench summary: {config.name if config else path.parent.name}", ""]
    if config is not None and config.description:
        lines += [config.description.strip(), ""]
    models = ", ".join(sorted(str(m) for m in results["model"].dropna().unique()))
    lines += [
        f"- runs: {len(results)} finished" + (f" of {n_planned} planned" if n_planned else "")
        + (f", {len(failed)} failed" if failed else ""),
        f"- data sets: {', '.join(results['dataset'].unique())}; modes: {', '.join(results['mode'].unique())}",
        f"- encoder: {models or 'default'}" + (f" ({'online' if config.online else 'offline'} choice)" if config else ""),
        f"- seeds: {n} ({', '.join(map(str, seeds))}); metric: macro-F1 on the test split",
        "",
        "## How to read this",
        "",
        f"- **mean ± std** over seeds; **{conf}% CI**: percentile bootstrap of the mean over seeds "
        f"({stats_opts['n_resamples']:,} resamples, seed {stats_opts['seed']}).",
        "- **Δ**: mean paired difference (this head minus the reference) over the same seeds, with its "
        f"bootstrap {conf}% CI; **t p**: paired t-test (`scipy.stats.ttest_rel`); **W p**: Wilcoxon signed-rank.",
        "- **verdict**: `higher` / `lower` only when the CI of Δ excludes 0 *and* the paired t-test "
        "gives p < 0.05; otherwise `no clear difference`.",
    ]
    if n < 10:
        min_w = 2.0 / 2**n
        lines.append(
            f"- **Low power:** with {n} seed{'s' if n != 1 else ''} a bootstrap over seeds sees only "
            f"{n} values, so its CIs are too narrow and only large, consistent effects are detectable; "
            f"the smallest two-sided Wilcoxon p-value {n} pairs can give is {min_w:.3g}"
            + (" (it can never reach 0.05)." if min_w >= 0.05 else ".")
            + " Treat `no clear difference` as *not shown*, not as *equal*."
        )
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in figures]
        lines.append("")

    for (dataset, mode), block in table.groupby(["dataset", "mode"], sort=False):
        comp = comparisons[(comparisons["dataset"] == dataset) & (comparisons["mode"] == mode)]
        vs_best = comp[comp["reference_kind"] == "best_classical"].set_index("head")
        best = comp[comp["reference_kind"] == "best_classical"]["reference"]
        best_name = best.iloc[0] if len(best) else None
        lines += [f"## {dataset} ({mode})", ""]
        rows = results[(results["dataset"] == dataset) & (results["mode"] == mode)]
        sizes = [f"{what} rows: {int(rows[col].median()):,}" for what, col in (("train", "train_samples"), ("test", "test_samples"))
                 if col in rows and rows[col].notna().any()]
        if best_name or sizes:
            lines += ["; ".join(([f"Best classical head: **{best_name}**"] if best_name else []) + sizes) + ".", ""]
        lines += [
            f"| head | control of | params | macro-F1 mean ± std | {conf}% CI | accuracy | train s "
            f"| Δ vs {best_name or 'best classical'} [{conf}% CI] | t p | W p | verdict |",
            "|---|---|---:|---|---|---:|---:|---|---:|---:|---|",
        ]
        for row in block.itertuples():
            params = f"{int(row.trainable_params):,}" if row.trainable_params is not None and not \
                (isinstance(row.trainable_params, float) and math.isnan(row.trainable_params)) else "–"
            if row.head in vs_best.index:
                c = vs_best.loc[row.head]
                delta = f"{_signed(c.mean_diff)} [{_signed(c.ci_low)}, {_signed(c.ci_high)}]"
                tp, wp, verdict = _fmt_p(c.t_pvalue), _fmt_p(c.w_pvalue), c.verdict
            else:
                delta, tp, wp, verdict = ("(reference)" if row.head == best_name else "–"), "–", "–", ""
            label = f"**{row.head}**" if row.head == best_name else row.head
            lines.append(
                f"| {label} | {row.base_head or ''} | {params} | {_fmt(row.f1_mean)} ± {_fmt(row.f1_std)} "
                f"| [{_fmt(row.f1_ci_low)}, {_fmt(row.f1_ci_high)}] | {_fmt(row.accuracy_mean)} "
                f"| {_fmt(row.train_runtime_mean, 1)} | {delta} | {tp} | {wp} | {verdict} |"
            )
        lines.append("")
        controls = comp[comp["reference_kind"] != "best_classical"]
        if len(controls):
            lines += [
                "Quantum head against its controls (Δ = quantum − control):",
                "",
                f"| quantum head | control | Δ macro-F1 [{conf}% CI] | t p | W p | verdict |",
                "|---|---|---|---:|---:|---|",
            ]
            for c in controls.itertuples():
                lines.append(
                    f"| {c.head} | {c.reference_kind} ({c.reference}) | {_signed(c.mean_diff)} "
                    f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}] | {_fmt_p(c.t_pvalue)} | {_fmt_p(c.w_pvalue)} "
                    f"| {c.verdict} |"
                )
            lines.append("")

    if len(comparisons):
        lines += ["## Tally", "", "Verdicts of every quantum head (all data sets and modes):", ""]
        quantum = comparisons[comparisons["head"].isin(results.loc[(results["head_type"] == "quantum")
                                                                   & (results["control"].fillna("") == ""), "head"])]
        lines += ["| reference | higher | no clear difference | lower |", "|---|---:|---:|---:|"]
        for kind, group in quantum.groupby("reference_kind", sort=False):
            counts = group["verdict"].value_counts()
            lines.append(f"| {kind} | {counts.get('higher', 0)} | {counts.get('no clear difference', 0)} "
                         f"| {counts.get('lower', 0)} |")
        flagged = int(quantum["verdict"].isin(["higher", "lower"]).sum())
        lines += [
            "",
            f"{len(quantum)} comparisons at p < 0.05 each, not corrected for multiplicity: about "
            f"{0.05 * len(quantum):.1f} would be flagged by chance alone if no head differed from any other; "
            f"{flagged} {'was' if flagged == 1 else 'were'} flagged.",
        ]
        lines.append("")
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{run_id}`: {error}" for run_id, error in failed.items()] + [""]
    _write_text_atomic(path, "\n".join(lines))
    return path
