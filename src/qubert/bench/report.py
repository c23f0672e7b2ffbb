"""``summary.md``: the tables and verdicts of a finished grid.

Two forms: with ``decisions`` (bench v3: the sequential decisions of
:func:`qubert.bench.sequential.decide_look`, optionally with the joint bootstrap of
:func:`qubert.bench.stats.bootstrap_decisions`) the verdicts are the sequential ones; without, the
fixed-seed comparisons of :func:`qubert.bench.stats.compare_heads` (bench v2) are reported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qubert.bench.config import BenchConfig
from qubert.files import write_text
from qubert.bench.stats import STOP_REASONS, aggregate, compare_heads, statistics_options

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


_CORRECTIONS = {
    "holm": "Holm's step-down correction, which bounds the family-wise error rate (the chance of even one "
            "false `better`, `worse` or `equivalent` in the family) by α",
    "bh": "the Benjamini-Hochberg correction, which bounds the false discovery rate (the expected share of "
          "false claims among the `better`, `worse` and `equivalent` verdicts of the family) by α",
    "none": "no correction (each comparison is tested at α on its own, so about α × the number of "
            "comparisons would be flagged by chance alone)",
}
_KIND_LABELS = {"best_classical": "best classical head", "matched_mlp": "matched MLP",
                "no_entanglement": "no entanglement", "frozen_circuit": "frozen circuit"}
_STOP_LABELS = {"stopped_by_patience": "patience", "stopped_by_cap": "cap", "stopped_by_max_steps": "max steps",
                "stopped_by_converged": "converged"}


def _stops(row: Any) -> str:
    """How a head's runs ended, e.g. ``patience 3/5, cap 2/5 (1 still improving)``."""
    parts = []
    for column in STOP_REASONS.values():
        count = getattr(row, column)
        if isinstance(count, float) and math.isnan(count):
            return "–"
        if count:
            part = f"{_STOP_LABELS[column]} {int(count)}/{row.n_seeds}"
            if column == "stopped_by_cap" and row.capped_while_improving:
                part += f" ({int(row.capped_while_improving)} still improving)"
            parts.append(part)
    return ", ".join(parts) or "–"


def _params(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(value):,}"


def _count(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(int(value))


def _best_params(text: Any) -> str:
    """``{"learning_rate": 0.0031, "layers": 2}`` as ``learning_rate=0.0031, layers=2``."""
    if not isinstance(text, str) or not text.strip():
        return "–"
    try:
        params = json.loads(text)
    except ValueError:
        return text
    if not isinstance(params, dict):
        return text
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "–"


# Long: the summary is one Markdown document written top to bottom; splitting it scatters its order.
def write_summary(results: Any, path: str | os.PathLike[str], *, config: BenchConfig | None = None,
                  figures: Sequence[Path] = (), failed: Mapping[str, str] | None = None,
                  n_planned: int | None = None, tuning: Any = None, decisions: Any = None,
                  design: Any = None, test_draws: Mapping[str, int | None] | None = None) -> Path:
    """Write ``summary.md``: a grid-wide tally of verdicts, the protocol in words, then per data set
    and mode each head's macro-F1 over seeds (mean +- std, bootstrap CI), how its runs stopped, its
    comparison with the best classical head (paired t-test and TOST, corrected for multiplicity,
    see :func:`~qubert.bench.stats.compare_heads`) and each quantum head against its controls;
    finally what tuning searched and chose (``tuning``: one row per tuned head) when given.

    With ``decisions`` (one row per comparison: ``dataset`` [, ``mode``], ``head``, ``reference``,
    ``kind``, ``family`` and the :class:`~qubert.bench.sequential.Decision` fields, plus the
    :data:`~qubert.bench.stats.BOOTSTRAP_COLUMNS` when the joint bootstrap ran) the summary is the
    sequential one instead: "N of M confirmatory comparisons decided", each comparison's Δ, CI,
    replicates, P(A > B), verdict and (inconclusive) smallest certifiable margin, what a verdict
    generalises to (``test_draws``: data set -> test rows per replicate, None for the whole test pool),
    the decision rule in words and the summary across data sets. ``design`` is the
    :class:`~qubert.bench.sequential.SequentialDesign` (default: from ``config``).

    Example:
        >>> write_summary(pd.read_csv("results.csv"), "summary.md")  # doctest: +SKIP
    """
    opts = statistics_options(config)
    conf = round(opts["confidence"] * 100)
    margin, alpha = float(opts["margin"]), float(opts["alpha"])
    path = Path(path)
    if decisions is not None:
        return _write_sequential_summary(results, path, config=config, figures=figures, failed=failed,
                                         n_planned=n_planned, tuning=tuning, decisions=decisions,
                                         design=design or design_from_config(config), test_draws=test_draws)
    table = aggregate(results, **opts)
    comparisons = compare_heads(results, **opts)
    seeds = sorted(int(s) for s in results["seed"].unique())
    n = len(seeds)
    n_quantum = int((comparisons["family"] == "quantum").sum())
    n_other = len(comparisons) - n_quantum
    on_test = sorted({f"{r.dataset} ({r.mode})" for r in comparisons.itertuples() if r.selected_on == "test_macro_f1"})

    lines = [f"# Bench summary: {config.name if config else path.parent.name}", ""]
    if config is not None and config.description:
        lines += [config.description.strip(), ""]
    models = ", ".join(sorted(str(m) for m in results["model"].dropna().unique())) if "model" in results else ""
    lines += [
        f"- runs: {len(results)} finished" + (f" of {n_planned} planned" if n_planned else "")
        + (f", {len(failed)} failed" if failed else ""),
        f"- data sets: {', '.join(results['dataset'].unique())}; modes: {', '.join(results['mode'].unique())}",
        f"- encoder: {models or 'default'}" + (f" ({'online' if config.online else 'offline'} choice)" if config else ""),
        f"- seeds: {n} ({', '.join(map(str, seeds))}); metric: macro-F1 on the test split",
        f"- verdicts: equivalence margin δ = ±{margin:g} macro-F1, α = {alpha:g}, correction: {opts['correction']}",
        "",
    ]
    lines += _verdict_section(comparisons, margin)
    lines += [
        "## How to read this",
        "",
        f"- **mean ± std** over seeds; **{conf}% CI**: percentile bootstrap of the mean over seeds "
        f"({opts['n_resamples']:,} resamples, seed {opts['seed']}). **val. F1**: mean macro-F1 on the "
        "validation split; **stopped by**: how many runs ended by early stopping (patience), at the epoch "
        "cap (\"still improving\": their best validation score was in the last epoch), at max steps, or converged.",
        "- **Reference**: in each data set and mode the *best classical head* is the non-control linear, "
        "MLP or logistic-regression head with the highest mean **validation** macro-F1; the test split "
        "plays no part in choosing it, so the comparison is not biased towards the reference."
        + (f" Exception: {', '.join(on_test)} had no validation scores, so the reference there was chosen on test." if on_test else ""),
        "- **Δ**: mean paired difference (this head minus the reference) over the seeds both finished, "
        f"with its bootstrap {conf}% CI. **p**: two-sided paired t-test of Δ = 0 (`scipy.stats.ttest_rel`). "
        f"**TOST p**: Schuirmann's two one-sided paired t-tests of the hypothesis |Δ| ≥ δ, with the margin "
        f"δ = {margin:g} macro-F1 (the larger of the two one-sided p-values).",
        f"- **Multiplicity**: p-values are corrected with {_CORRECTIONS[opts['correction']]} (α = {alpha:g}), "
        "across the whole grid (all data sets and modes), separately for the difference tests and for the "
        f"equivalence tests. The family that answers *does the quantum head help* holds {n_quantum} "
        f"comparison{'s' if n_quantum != 1 else ''}: each non-control quantum head against the best classical "
        f"head and against each of its controls. The other {n_other} comparison{'s' if n_other != 1 else ''} "
        "(the other classical heads and the controls against the best classical head) are corrected as a "
        "family of their own. **p adj.** and **TOST p adj.** are the corrected values.",
        f"- **Verdict** (from the corrected p-values at α = {alpha:g}): `equivalent` when TOST p adj. < α, "
        f"i.e. Δ is shown to lie within ±{margin:g} (this wins over a significant difference smaller than "
        f"the margin); otherwise `better` / `worse` when p adj. < α; otherwise `inconclusive`: the data "
        f"show neither a difference nor equivalence within ±{margin:g}. `inconclusive` means *not shown "
        "either way*; it is not evidence that the heads are equal.",
    ]
    if n < 10:
        lines.append(
            f"- **Low power:** with {n} seed{'s' if n != 1 else ''} each test sees only {n} paired "
            f"differences ({max(n - 1, 0)} degree{'s' if n != 2 else ''} of freedom), and the bootstrap CIs "
            "are too narrow (they cannot see variation the seeds do not show): only large, consistent "
            f"differences, or a seed-to-seed spread of Δ well below δ, can reach a verdict other than `inconclusive`."
        )
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in figures]
        lines.append("")

    for (dataset, mode), block in table.groupby(["dataset", "mode"], sort=False):
        comp = comparisons[(comparisons["dataset"] == dataset) & (comparisons["mode"] == mode)]
        vs_best = comp[comp["reference_kind"] == "best_classical"].set_index("head")
        best = comp[comp["reference_kind"] == "best_classical"]
        best_name = best["reference"].iloc[0] if len(best) else None
        lines += [f"## {dataset} ({mode})", ""]
        rows = results[(results["dataset"] == dataset) & (results["mode"] == mode)]
        sizes = [f"{what} rows: {int(rows[col].median()):,}" for what, col in (("train", "train_samples"), ("test", "test_samples"))
                 if col in rows and rows[col].notna().any()]
        chosen = []
        if best_name:
            chosen_on = "validation" if best["selected_on"].iloc[0] == "eval_macro_f1" else "test (no validation scores)"
            chosen = [f"Best classical head: **{best_name}** (chosen on {chosen_on} macro-F1)"]
        if chosen or sizes:
            lines += ["; ".join(chosen + sizes) + ".", ""]
        lines += [
            f"| head | control of | params | macro-F1 mean ± std | {conf}% CI | accuracy | val. F1 | stopped by | train s "
            f"| Δ vs {best_name or 'best classical'} [{conf}% CI] | p | p adj. | TOST p adj. | verdict |",
            "|---|---|---:|---|---|---:|---:|---|---:|---|---:|---:|---:|---|",
        ]
        for row in block.itertuples():
            if row.head in vs_best.index:
                c = vs_best.loc[row.head]
                delta = f"{_signed(c.mean_diff)} [{_signed(c.ci_low)}, {_signed(c.ci_high)}]"
                tests = f"{_fmt_p(c.t_pvalue)} | {_fmt_p(c.p_difference_adjusted)} | {_fmt_p(c.p_equivalence_adjusted)} | {c.verdict}"
            else:
                delta, tests = ("(reference)" if row.head == best_name else "–"), "– | – | – | "
            label = f"**{row.head}**" if row.head == best_name else row.head
            lines.append(
                f"| {label} | {row.base_head or ''} | {_params(row.trainable_params)} | {_fmt(row.f1_mean)} ± {_fmt(row.f1_std)} "
                f"| [{_fmt(row.f1_ci_low)}, {_fmt(row.f1_ci_high)}] | {_fmt(row.accuracy_mean)} | {_fmt(row.eval_f1_mean)} "
                f"| {_stops(row)} | {_fmt(row.train_runtime_mean, 1)} | {delta} | {tests} |"
            )
        lines.append("")
        controls = comp[comp["reference_kind"] != "best_classical"]
        if len(controls):
            lines += [
                "Quantum head against its controls (Δ = quantum − control):",
                "",
                f"| quantum head | control | Δ macro-F1 [{conf}% CI] | p | p adj. | TOST p adj. | verdict |",
                "|---|---|---|---:|---:|---:|---|",
            ]
            for c in controls.itertuples():
                lines.append(
                    f"| {c.head} | {c.reference_kind} ({c.reference}) | {_signed(c.mean_diff)} "
                    f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}] | {_fmt_p(c.t_pvalue)} "
                    f"| {_fmt_p(c.p_difference_adjusted)} | {_fmt_p(c.p_equivalence_adjusted)} | {c.verdict} |"
                )
            lines.append("")
    return _finish_summary(lines, path, tuning, failed)


def _finish_summary(lines: list[str], path: Path, tuning: Any, failed: Mapping[str, str] | None) -> Path:
    """Both summaries end alike: the tuning section, the failed runs, then one atomic write."""
    if tuning is not None and len(tuning):
        lines += _tuning_section(tuning)
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{run_id}`: {error}" for run_id, error in failed.items()] + [""]
    write_text(path, "\n".join(lines))
    return path


def _verdict_section(comparisons: Any, margin: float) -> list[str]:
    """The grid-wide tally of the quantum family's verdicts, and the verdict of each quantum head per data set."""
    quantum = comparisons[comparisons["family"] == "quantum"]
    if not len(quantum):
        return []
    lines = [
        "## Verdicts",
        "",
        "Every non-control quantum head, all data sets and modes (see *How to read this*):",
        "",
        f"| quantum head against | better | worse | equivalent within ±{margin:g} | inconclusive | comparisons |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, group in quantum.groupby("reference_kind", sort=False):
        counts = group["verdict"].value_counts()
        lines.append(f"| {_KIND_LABELS.get(kind, kind)} | {counts.get('better', 0)} | {counts.get('worse', 0)} "
                     f"| {counts.get('equivalent', 0)} | {counts.get('inconclusive', 0)} | {len(group)} |")
    kinds = list(dict.fromkeys(quantum["reference_kind"]))
    lines += ["", "Per data set and mode:", "",
              "| data set (mode) | quantum head | " + " | ".join(f"vs {_KIND_LABELS.get(k, k)}" for k in kinds) + " |",
              "|---|---|" + "---|" * len(kinds)]
    for (dataset, mode, head), group in quantum.groupby(["dataset", "mode", "head"], sort=False):
        by_kind = {r.reference_kind: r for r in group.itertuples()}
        cells = []
        for kind in kinds:
            r = by_kind.get(kind)
            if r is None:
                cells.append("–")
            else:
                against = f" vs {r.reference}" if kind == "best_classical" else ""
                cells.append(f"{r.verdict} ({_signed(r.mean_diff)}{against})")
        lines.append(f"| {dataset} ({mode}) | {head} | " + " | ".join(cells) + " |")
    return lines + [""]


def _tuning_section(tuning: Any) -> list[str]:
    """What was searched per head and what was chosen."""
    lines = ["## Tuning", ""]
    trials = tuning["trials"].dropna().astype(int) if "trials" in tuning else None
    if trials is not None and len(trials):
        per_block = tuning.groupby(["dataset", "mode"], sort=False)["trials"].nunique()
        if (per_block <= 1).all() and trials.nunique() == 1:
            lines.append(f"Every head had the same budget: {int(trials.iloc[0])} trials, scored on validation "
                         "macro-F1; the chosen settings were then re-run on every seed and scored on test.")
        else:
            lines.append("**Unequal budgets:** the number of trials differs between heads (see the table); "
                         "comparisons between heads with different budgets favour the one searched longer.")
        lines.append("")
    lines += ["| data set (mode) | head | trials | failed trials | searched | chosen | best val. F1 |",
              "|---|---|---:|---:|---|---|---:|"]
    for row in tuning.to_dict("records"):
        space = row.get("space") if isinstance(row.get("space"), str) and row.get("space") else "–"
        lines.append(f"| {row.get('dataset', '')} ({row.get('mode', '')}) | {row.get('head', '')} "
                     f"| {_count(row.get('trials'))} | {_count(row.get('failed_trials'))} | {space.replace('|', '/')} "
                     f"| {_best_params(row.get('best_params'))} | {_fmt(row.get('best_eval_macro_f1'))} |")
    return lines + [""]


# ------------------------------------------------------------------------------------------- bench v3

_FAMILY_RULES = {
    "confirmatory": "Holm's step-down over the family's difference and equivalence p-values together, counting "
                    "at each step the comparisons that still have an open hypothesis (a comparison's two nulls, "
                    "Δ = 0 and |Δ| ≥ δ, cannot both be true; Shaffer 1986): the chance of *any* false verdict in "
                    "the family is at most α",
    "exploratory": "Benjamini-Hochberg over the family's difference and equivalence p-values together: the "
                   "expected share of false verdicts among the decided ones is at most α",
}
_METHOD_NAMES = {"obrien_fleming": "O'Brien-Fleming-type", "pocock": "Pocock-type"}


def design_from_config(config: Any) -> Any:
    """The :class:`~qubert.bench.sequential.SequentialDesign` a bench config states (its ``looks`` and
    ``statistics``), with the defaults of :mod:`qubert.bench.sequential` where it is silent."""
    from qubert.bench.sequential import DEFAULT_LOOKS, SequentialDesign

    opts = statistics_options(config)
    return SequentialDesign(looks=tuple(getattr(config, "looks", None) or DEFAULT_LOOKS), alpha=float(opts["alpha"]),
                            margin=float(opts["margin"]), method=opts.get("method", "obrien_fleming"))


def decided_sentence(decisions: Any) -> str:
    """``"N of M confirmatory comparisons decided"`` (the words the issue asks for).

    Example:
        >>> import pandas as pd
        >>> decided_sentence(pd.DataFrame({"family": ["confirmatory"] * 3 + ["exploratory"],
        ...                                "decided": [True, False, True, True]}))
        '2 of 3 confirmatory comparisons decided'
    """
    confirmatory = decisions[decisions["family"] == "confirmatory"]
    return f"{int(confirmatory['decided'].astype(bool).sum())} of {len(confirmatory)} confirmatory comparisons decided"


def _cell(row: Any) -> str:
    mode = getattr(row, "mode", None)
    return f"{row.dataset} ({mode})" if isinstance(mode, str) and mode and mode != "frozen" else str(row.dataset)


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return "–"
    return f"[{_signed(float(low))}, {_signed(float(high))}]"


def _generalisation_lines(decisions: Any, test_draws: Mapping[str, int | None] | None) -> list[str]:
    lines = ["## What a verdict generalises to", ""]
    datasets = list(dict.fromkeys(decisions["dataset"]))
    for dataset in datasets:
        if test_draws is None or dataset not in test_draws:
            lines.append(f"- **{dataset}**: not stated by the bench (test draws unknown).")
        elif test_draws[dataset] is None:
            lines.append(
                f"- **{dataset}**: every replicate is scored on the *whole test pool*, so Δ and its sequential CI "
                "generalise to fresh training draws from the training pool and fresh initialisations, scored on "
                "these test rows; the joint bootstrap resamples the test rows too (one resample shared by all "
                "replicates), and its interval is the one that speaks for fresh test rows from the same source.")
        else:
            lines.append(
                f"- **{dataset}**: every replicate is scored on a *fresh stratified draw of {int(test_draws[dataset]):,} "
                "test rows* from the test pool, so Δ and its sequential CI generalise to fresh training draws, "
                "initialisations and test draws from these pools (the joint bootstrap's row resampling then counts "
                "the test-row noise twice: its interval is conservative).")
    lines += ["", "Nothing here speaks for data from another source than these pools.", ""]
    return lines


# Long: summary.md is written section by section in reading order; each section is a few lines.
def _write_sequential_summary(results: Any, path: Path, *, config: Any, figures: Sequence[Path],
                              failed: Mapping[str, str] | None, n_planned: int | None, tuning: Any, decisions: Any,
                              design: Any, test_draws: Mapping[str, int | None] | None) -> Path:
    from qubert.bench.stats import cross_dataset_summary

    opts = statistics_options(config)
    conf = round(opts["confidence"] * 100)
    margin, alpha = design.margin, design.alpha
    ci_level = round((1 - alpha) * 100)
    has_boot = "boot_ci_low" in decisions and decisions["boot_ci_low"].notna().any()
    lines = [f"# Bench summary: {config.name if config else path.parent.name}", ""]
    if config is not None and getattr(config, "description", ""):
        lines += [config.description.strip(), ""]
    replicates = sorted(int(s) for s in results["seed"].unique()) if "seed" in results and len(results) else []
    n_exploratory = int((decisions["family"] == "exploratory").sum())
    lines += [
        f"**{decided_sentence(decisions)}** (better, worse, or equivalent within ±{margin:g} macro-F1)"
        + (f"; {n_exploratory} exploratory comparison{'s' if n_exploratory != 1 else ''} besides." if n_exploratory else "."),
        "",
        f"- runs: {len(results)} finished" + (f" of {n_planned} planned" if n_planned else "")
        + (f", {len(failed)} failed" if failed else ""),
        f"- data sets: {', '.join(dict.fromkeys(results['dataset']))}" if len(results) else "- data sets: none",
        f"- replicates: up to {design.looks[-1]} per head, in looks after {', '.join(map(str, design.looks))}"
        + (f"; {len(replicates)} distinct replicates ran" if replicates else ""),
        f"- decisions: {_METHOD_NAMES[design.method]} alpha spending, α = {alpha:g} per test, equivalence margin "
        f"δ = ±{margin:g} macro-F1; confirmatory family: Holm, exploratory: Benjamini-Hochberg",
        "",
    ]
    lines += ["## Verdicts", "", "| family | comparison | better | worse | equivalent | inconclusive | decided |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for (family, kind), group in decisions.groupby(["family", "kind"], sort=False):
        counts = group["verdict"].value_counts()
        lines.append(f"| {family} | vs {_KIND_LABELS.get(kind, kind)} | {counts.get('better', 0)} | {counts.get('worse', 0)} "
                     f"| {counts.get('equivalent', 0)} | {counts.get('inconclusive', 0)} "
                     f"| {int(group['decided'].astype(bool).sum())} of {len(group)} |")
    lines += ["", "## Comparisons", "",
              f"Δ = head − reference, macro-F1 on the test rows of each replicate. **CI**: the repeated {ci_level}% "
              "confidence interval at the look the values are from (valid whatever look stopped)"
              + (f"; **joint bootstrap**: {conf}% percentile interval resampling replicates and test rows"
                 if has_boot else "") + ". **P(A > B)**: share of replicates where the head beats the reference. "
              "**p adj.**: the repeated p-values after the family's correction. **smallest δ**: for an "
              "inconclusive comparison, the smallest margin its data would certify as equivalent at the level the "
              "family's correction grants it whatever the other comparisons show (α/M for Holm over M confirmatory "
              "comparisons, α/2M for Benjamini-Hochberg over M exploratory ones); the CI is not adjusted.",
              "",
              "| data set | head | reference | family | replicates | Δ | CI |" + (" joint bootstrap |" if has_boot else "")
              + " P(A > B) | p adj. difference | p adj. equivalence | verdict | smallest δ |",
              "|---|---|---|---|---:|---:|---|" + ("---|" if has_boot else "") + "---:|---:|---:|---|---:|"]
    for row in decisions.itertuples(index=False):
        verdict = row.verdict + (f" (look {int(row.look)})" if row.decided else "")
        smallest = _fmt(row.smallest_margin) if row.verdict == "inconclusive" else "–"
        boot = f" {_interval(row.boot_ci_low, row.boot_ci_high)} |" if has_boot else ""
        lines.append(
            f"| {_cell(row)} | {row.head} | {row.reference} ({_KIND_LABELS.get(row.kind, row.kind)}) | {row.family} "
            f"| {_count(row.n)} | {_signed(float(row.delta))} | {_interval(row.ci_low, row.ci_high)} |{boot} "
            f"{_fmt(row.prob_improvement, 2)} | {_fmt_p(row.p_difference_adjusted)} | {_fmt_p(row.p_equivalence_adjusted)} "
            f"| {verdict} | {smallest} |")
    lines.append("")
    lines += _generalisation_lines(decisions, test_draws)
    lines += [
        "## How the decisions were made",
        "",
        f"- Replicate r trains every head on the same fresh training draw with initialisation seed r and scores "
        f"it on the same test rows, so Δ_r is paired. After each look ({', '.join(map(str, design.looks))} "
        "replicates) every open comparison is tested twice: for a difference (Δ = 0, two-sided, paired t) and for "
        f"equivalence (TOST: Δ ≤ −{margin:g} and Δ ≥ +{margin:g} rejected, each one-sided).",
        f"- **Across looks** each one-sided test spends its level with the Lan-DeMets {_METHOD_NAMES[design.method]} "
        "spending function; the boundaries account for the correlation of nested looks (numerical integration). "
        "A test's *repeated p-value* is the smallest level at which it would have rejected by this look; it is "
        "valid however many looks are taken. A comparison is decided at the first look where a corrected p-value "
        f"is ≤ α = {alpha:g}; it is then frozen (its numbers are those of that look), and a head whose "
        "comparisons are all decided trains no more replicates.",
        f"- **Confirmatory** comparisons: {_FAMILY_RULES['confirmatory']}. **Exploratory**: "
        f"{_FAMILY_RULES['exploratory']}. Applying a correction at every look is sound because repeated p-values "
        "only fall and a frozen one is never below the value it would have reached.",
        f"- `equivalent` wins over a significant difference smaller than δ. `inconclusive` means *not shown either "
        "way*, not that the heads are equal: the smallest δ says what equivalence the data can vouch for.",
        "",
    ]
    cross = cross_dataset_summary(decisions, margin, seed=int(opts["seed"]))
    if len(cross):
        lines += ["## Across data sets", "",
                  "Each data set counts once (its Δ at the deciding or last look). **Wilcoxon p**: two-sided "
                  "signed-rank test of the per-data-set Δ against 0 (`scipy.stats.wilcoxon`, exact). "
                  f"**P(head better) / P(within ±{margin:g}) / P(reference better)**: the Bayesian signed-rank test "
                  f"with a region of practical equivalence ±{margin:g} (Benavoli et al. 2014, `baycomp`). "
                  f"Method: {cross['method'].iloc[0]}.",
                  "",
                  "| head | against | data sets | better | worse | equivalent | inconclusive | median Δ | Wilcoxon p "
                  f"| P(head better) | P(within ±{margin:g}) | P(reference better) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in cross.itertuples(index=False):
            lines.append(f"| {row.head} | {_KIND_LABELS.get(row.kind, row.kind)} | {row.datasets} | {row.better} "
                         f"| {row.worse} | {row.equivalent} | {row.inconclusive} | {_signed(row.median_delta)} "
                         f"| {_fmt_p(row.wilcoxon_p)} | {_fmt(row.p_head_better, 2)} | {_fmt(row.p_rope, 2)} "
                         f"| {_fmt(row.p_reference_better, 2)} |")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in figures]
        lines.append("")
    if len(results):
        table = aggregate(results, **opts)
        lines += ["## Heads", "",
                  f"Macro-F1 over each head's replicates (mean ± std, percentile bootstrap {conf}% CI of the mean).",
                  "",
                  f"| data set | head | control of | params | replicates | macro-F1 mean ± std | {conf}% CI | val. F1 "
                  "| stopped by | train s |",
                  "|---|---|---|---:|---:|---|---|---:|---|---:|"]
        for row in table.itertuples(index=False):
            lines.append(
                f"| {_cell(row)} | {row.head} | {row.base_head or ''} | {_params(row.trainable_params)} | {row.n_seeds} "
                f"| {_fmt(row.f1_mean)} ± {_fmt(row.f1_std)} | [{_fmt(row.f1_ci_low)}, {_fmt(row.f1_ci_high)}] "
                f"| {_fmt(row.eval_f1_mean)} | {_stops(row)} | {_fmt(row.train_runtime_mean, 1)} |")
        lines.append("")
    return _finish_summary(lines, path, tuning, failed)
