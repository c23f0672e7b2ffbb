"""Figures of a grid: macro-F1 by head, macro-F1 versus qubits, Δ versus the best classical head, and training curves."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from qubert.bench.config import BenchConfig
from qubert.bench.stats import aggregate, compare_heads, is_classical, statistics_options

FIGURES_DIR = "figures"

_COLOURS = {"linear": "#7f7f7f", "mlp": "#1f77b4", "logreg": "#8c564b", "quantum": "#9467bd", "matched_mlp": "#ff7f0e",
            "no_entanglement": "#c5b0d5", "frozen_circuit": "#17becf"}


def _head_colour(head_type: str, control: str) -> str:
    return _COLOURS.get(control or head_type, "#333333")


def _classical(block: Any) -> Any:
    return block[[is_classical(t, c) for t, c in zip(block["head_type"], block["control"])]]


def _xerr(centre: Any, low: Any, high: Any) -> np.ndarray:
    """Error bar lengths ``[[centre - low], [high - centre]]``, never negative: a mean of bit-identical
    scores can land 1 ulp outside its own interval, and matplotlib refuses a negative error bar."""
    centre, low, high = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (centre, low, high))
    return np.maximum(np.stack([centre - low, high - centre]), 0.0)


def plot_figures(results: Any, output_dir: str | os.PathLike[str], *, config: BenchConfig | None = None,
                 decisions: Any = None, margin: float | None = None) -> list[Path]:
    """Write ``figures/macro_f1_by_head.png``, ``macro_f1_vs_qubits.png`` and
    ``delta_vs_best_classical.png`` (when there are quantum heads), and ``training_curves.png``
    (when runs left a ``history.json``). Returns the paths.

    With ``decisions`` (the sequential decisions, see :func:`qubert.bench.report.write_summary`) the
    forest plot is ``delta_by_comparison.png`` instead: every comparison's Δ with its repeated CI (and
    the joint-bootstrap interval when present), coloured by verdict, against the ±``margin`` band
    (default: the config's margin).

    Example:
        >>> plot_figures(pd.read_csv("runs/bench/quick/results.csv"), "runs/bench/quick")  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    figures_dir = output_dir / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    stats_opts = statistics_options(config)
    table = aggregate(results, **stats_opts)
    paths = [_plot_by_head(results, table, figures_dir / "macro_f1_by_head.png", stats_opts["confidence"])]
    if (results["head_type"] == "quantum").any():
        paths.append(_plot_vs_qubits(table, figures_dir / "macro_f1_vs_qubits.png", stats_opts["confidence"]))
        if decisions is None:
            forest = _plot_delta_vs_best(compare_heads(results, **stats_opts), figures_dir / "delta_vs_best_classical.png",
                                         stats_opts)
            if forest is not None:
                paths.append(forest)
    if decisions is not None and len(decisions) and decisions["delta"].notna().any():
        paths.append(_plot_decisions(decisions, figures_dir / "delta_by_comparison.png",
                                     float(stats_opts["margin"] if margin is None else margin)))
    curves = _plot_training_curves(results, output_dir, figures_dir / "training_curves.png")
    if curves is not None:
        paths.append(curves)
    return paths


def _panels(table: Any) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(table["dataset"], table["mode"])))


def _new_figure(n_panels: int, width: float, height: float, ncols: int | None = None):
    from matplotlib.figure import Figure

    ncols = ncols or min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _plot_by_head(results: Any, table: Any, path: Path, confidence: float) -> Path:
    panels = _panels(table)
    n_heads = table.groupby(["dataset", "mode"]).size().max()
    fig, axes = _new_figure(len(panels), 5.0, 1.2 + 0.36 * n_heads)
    for ax, (dataset, mode) in zip(axes, panels):
        block = table[(table["dataset"] == dataset) & (table["mode"] == mode)].reset_index(drop=True)
        ys = np.arange(len(block))[::-1]
        for y, row in zip(ys, block.itertuples()):
            colour = _head_colour(row.head_type, row.control)
            # A dot plot, not bars: the axis does not start at 0, and a bar would say it does.
            ax.errorbar(row.f1_mean, y, xerr=_xerr(row.f1_mean, row.f1_ci_low, row.f1_ci_high),
                        fmt="D", ms=7, color=colour, ecolor=colour, capsize=3, lw=1.5, zorder=2)
            seeds = results[(results["dataset"] == dataset) & (results["mode"] == mode) & (results["head"] == row.head)]
            ax.scatter(seeds["test_macro_f1"], np.full(len(seeds), y), s=12, color="black", alpha=0.6, zorder=3)
        classical = _classical(block)
        if len(classical):
            # The reference of the summary: chosen on validation where every classical head has a score.
            key = "eval_f1_mean" if classical["eval_f1_mean"].notna().all() else "f1_mean"
            ax.axvline(classical.loc[classical[key].idxmax(), "f1_mean"], color="black", ls="--", lw=0.8)
        ax.set_yticks(ys, block["head"], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        scores = results.loc[results["dataset"] == dataset, "test_macro_f1"]
        low = max(0.0, min(block["f1_ci_low"].min(), scores.min()) - 0.05)
        ax.set_xlim(low, min(1.0, max(block["f1_ci_high"].max(), scores.max()) + 0.05))
        ax.set_xlabel("test macro-F1")
        ax.set_title(f"{dataset} ({mode})", fontsize=11)
    fig.suptitle(f"Test macro-F1 by head: diamond = mean over seeds with {round(confidence * 100)}% bootstrap CI, "
                 "dots = seeds (replicates), dashed = best classical head (chosen on validation)", fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def _plot_vs_qubits(table: Any, path: Path, confidence: float) -> Path:
    panels = _panels(table)
    fig, axes = _new_figure(len(panels), 4.2, 3.2)
    styles = {"": ("quantum", "-o"), "matched_mlp": ("matched MLP", "--s"),
              "no_entanglement": ("no entanglement", ":^"), "frozen_circuit": ("frozen circuit", "-.v")}
    for ax, (dataset, mode) in zip(axes, panels):
        block = table[(table["dataset"] == dataset) & (table["mode"] == mode)]
        quantum_like = block[(block["head_type"] == "quantum") | (block["control"] == "matched_mlp")].copy()
        if len(quantum_like):
            base = table.set_index(["dataset", "mode", "head"])
            # A control's qubit count and depth are those of the quantum head it controls.
            for col in ("qubits", "layers"):
                quantum_like[col] = [
                    base.loc[(dataset, mode, r.base_head), col] if r.control else getattr(r, col)
                    for r in quantum_like.itertuples()
                ]
            # One line per circuit design: the head's label without its qubit count (a depth in the
            # label is a grid axis; a tuned depth is not, it is a per-head choice and stays out).
            quantum_like["design"] = [_design(r.base_head if r.control else r.head) for r in quantum_like.itertuples()]
            series = list(quantum_like.groupby(["control", "design"], sort=False))
            for k, ((control, design), group) in enumerate(series):
                group = group.sort_values("qubits")
                name, style = styles.get(control, (control, "-"))
                colour = _head_colour("quantum", control)
                if design and not control:  # another circuit design: its own marker and a darker shade
                    style, colour = "--D", "#4b2a7b"
                offset = 0.08 * (k - (len(series) - 1) / 2)  # side by side, so the error bars stay readable
                ax.errorbar(group["qubits"].astype(int) + offset, group["f1_mean"],
                            yerr=_xerr(group["f1_mean"], group["f1_ci_low"], group["f1_ci_high"]),
                            fmt=style, capsize=3, ms=4, color=colour,
                            label=name + (f" ({design})" if design else ""))
        for row in _classical(block).itertuples():
            ax.axhline(row.f1_mean, color=_head_colour(row.head_type, ""), ls="--", lw=1, label=row.head)
            ax.set_xticks(sorted(int(q) for q in quantum_like["qubits"].unique()))
        ax.set_xlabel("qubits")
        ax.set_ylabel("test macro-F1")
        ax.set_title(f"{dataset} ({mode})", fontsize=11)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle(f"Test macro-F1 versus qubit count (mean, {round(confidence * 100)}% bootstrap CI over seeds)", fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def _design(head: str) -> str:
    """A quantum head's circuit design from its label, without the qubit count.

    Example:
        >>> _design("quantum_q4_l2_measurement-probs"), _design("quantum_q4")
        ('2 layers, readout probs', '')
    """
    parts = re.split(r"_(?=l\d+|noent|frozen|[a-z]+-)", re.sub(r"^quantum_q\d+", "", head).strip("_"))
    words = [f"{p[1:]} layer{'s' if p[1:] != '1' else ''}" if re.fullmatch(r"l\d+", p) else p for p in parts if p]
    return ", ".join(w.replace("measurement-", "readout ") for w in words)


_VERDICT_STYLES = {"better": ("#2ca02c", "^"), "worse": ("#d62728", "v"),
                   "equivalent": ("#1f77b4", "D"), "inconclusive": ("#7f7f7f", "o")}


def _plot_delta_vs_best(comparisons: Any, path: Path, opts: dict[str, Any]) -> Path | None:
    """A forest plot: each quantum head's Δ macro-F1 against the best classical head, with its CI,
    the ±δ equivalence band and the (corrected) verdict as marker colour and shape."""
    rows = comparisons[(comparisons["family"] == "quantum") & (comparisons["reference_kind"] == "best_classical")]
    if not len(rows):
        return None
    margin, conf = float(opts["margin"]), round(opts["confidence"] * 100)
    panels = list(dict.fromkeys(zip(rows["dataset"], rows["mode"])))
    n_heads = rows.groupby(["dataset", "mode"]).size().max()
    fig, axes = _new_figure(len(panels), 4.6, 1.5 + 0.42 * n_heads)
    # One x range for every panel, so that gaps can be compared across data sets.
    reach = max(2 * margin, float(np.nanmax(np.abs(rows[["ci_low", "ci_high", "mean_diff"]].to_numpy()))))
    limit = 1.1 * reach
    for ax, (dataset, mode) in zip(axes, panels):
        block = rows[(rows["dataset"] == dataset) & (rows["mode"] == mode)].reset_index(drop=True)
        ys = np.arange(len(block))[::-1]
        ax.axvspan(-margin, margin, color="#1f77b4", alpha=0.12, lw=0, label=f"equivalence band ±{margin:g}")
        ax.axvline(0, color="black", lw=0.8)
        for y, row in zip(ys, block.itertuples()):
            colour, marker = _VERDICT_STYLES.get(row.verdict, ("#333333", "o"))
            ax.errorbar(row.mean_diff, y, xerr=_xerr(row.mean_diff, row.ci_low, row.ci_high),
                        fmt=marker, ms=7, color=colour, ecolor=colour, capsize=3, lw=1.5, label=row.verdict)
        ax.set_yticks(ys, block["head"], fontsize=9)
        ax.set_ylim(-0.7, len(block) - 0.3)
        ax.set_xlim(-limit, limit)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"Δ macro-F1 vs {block['reference'].iloc[0]}", fontsize=10)
        ax.set_title(f"{dataset} ({mode})", fontsize=11)
    handles: dict[str, Any] = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    order = [f"equivalence band ±{margin:g}", *_VERDICT_STYLES]
    labels = [label for label in order if label in handles]
    fig.legend([handles[label] for label in labels], labels, loc="outside lower center", ncols=len(labels),
               fontsize=10, frameon=False)
    fig.suptitle(f"Quantum head minus the best classical head (chosen on validation): mean Δ over seeds, {conf}% "
                 f"bootstrap CI.\nMarker = verdict from the {opts['correction']}-corrected paired t-test and TOST "
                 f"(α = {opts['alpha']:g}), not from the CI", fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def _plot_decisions(decisions: Any, path: Path, margin: float) -> Path:
    """The forest plot of the sequential decisions: one row per comparison, one panel per data set."""
    rows = decisions[decisions["delta"].notna()].copy()
    rows["panel"] = [f"{d} ({m})" if isinstance(m, str) and m and m != "frozen" else str(d)
                     for d, m in zip(rows["dataset"], rows["mode"] if "mode" in rows else [""] * len(rows))]
    panels = list(dict.fromkeys(rows["panel"]))
    n_rows = rows.groupby("panel").size().max()
    has_boot = "boot_ci_low" in rows and rows["boot_ci_low"].notna().any()
    fig, axes = _new_figure(len(panels), 5.6, 1.6 + 0.42 * n_rows, ncols=min(2, len(panels)))
    end_columns = ["ci_low", "ci_high", "delta"] + (["boot_ci_low", "boot_ci_high"] if has_boot else [])
    for ax, panel in zip(axes, panels):
        block = rows[rows["panel"] == panel].reset_index(drop=True)
        # Each panel its own symmetric scale: one data set's large gaps must not flatten the others'
        # ±margin band to a line.
        ends = block[end_columns].to_numpy(float)
        limit = 1.15 * max(2 * margin, float(np.nanmax(np.abs(ends[np.isfinite(ends)])))) if np.isfinite(ends).any() else 2 * margin
        ys = np.arange(len(block))[::-1]
        ax.axvspan(-margin, margin, color="#1f77b4", alpha=0.12, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        for y, row in zip(ys, block.itertuples(index=False)):
            colour, marker = _VERDICT_STYLES.get(row.verdict, ("#333333", "o"))
            hollow = row.family != "confirmatory"
            ax.errorbar(row.delta, y, xerr=_xerr(row.delta, row.ci_low, row.ci_high), fmt=marker, ms=7, color=colour,
                        ecolor=colour, capsize=3, lw=1.5, mfc="white" if hollow else colour)
            if has_boot and np.isfinite(row.boot_ci_low):
                ax.plot([row.boot_ci_low, row.boot_ci_high], [y - 0.22, y - 0.22], color=colour, lw=3, alpha=0.45,
                        solid_capstyle="butt")
        labels = [f"{r.head} vs {r.reference}\n({_KIND_NAMES.get(r.kind, r.kind)}, n={int(r.n)})"
                  for r in block.itertuples(index=False)]
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_ylim(-0.7, len(block) - 0.3)
        ax.set_xlim(-limit, limit)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("Δ macro-F1 (head − reference)", fontsize=10)
        ax.set_title(panel, fontsize=11)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # Proxy artists: the legend must show filled verdict markers and a neutral bootstrap bar whatever
    # the first plotted row happened to be.
    shown = set(rows["verdict"])
    proxies = [(Patch(color="#1f77b4", alpha=0.12, lw=0), f"equivalence band ±{margin:g}")]
    proxies += [(Line2D([], [], color=c, marker=m, ms=7, lw=1.5), v) for v, (c, m) in _VERDICT_STYLES.items() if v in shown]
    if has_boot:
        proxies.append((Line2D([], [], color="#555555", lw=3, alpha=0.45), "joint bootstrap interval"))
    fig.legend([h for h, _ in proxies], [label for _, label in proxies], loc="outside lower center",
               ncols=min(len(proxies), 6), fontsize=10, frameon=False)
    fig.suptitle("Δ macro-F1 per comparison at the look that decided it (or the last): repeated CI of the sequential "
                 "test;\nmarker = verdict after the family correction (filled: confirmatory, hollow: exploratory); x scales differ per panel",
                 fontsize=11)
    fig.savefig(path, dpi=110)
    return path


_KIND_NAMES = {"best_classical": "best classical", "matched_mlp": "matched MLP", "no_entanglement": "no entanglement",
               "frozen_circuit": "frozen circuit"}


def _figure_legend(fig: Any, axes: Any) -> None:
    """One legend for all panels, below them (never over the data)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 4), fontsize=10, frameon=False)


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Per-epoch records from a run's ``history.json`` (``[]`` when missing or unreadable).

    Accepts a list of per-epoch dicts, ``{"epochs"|"history"|"log_history": [...]}`` or a dict of
    equal-length lists.
    """
    path = Path(run_dir) / "history.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):
        for key in ("epochs", "history", "log_history"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            lists = {k: v for k, v in data.items() if isinstance(v, list)}
            if lists and len({len(v) for v in lists.values()}) == 1:
                length = len(next(iter(lists.values())))
                data = [{k: v[i] for k, v in lists.items()} for i in range(length)]
    if not isinstance(data, list):
        return []
    records = [r for r in data if isinstance(r, dict)]
    for i, record in enumerate(records):
        record.setdefault("epoch", i + 1)
    return records


def _plot_training_curves(results: Any, output_dir: Path, path: Path) -> Path | None:
    main = results[results["control"].fillna("") == ""]
    curves: dict[tuple[str, str], dict[str, dict[str, dict[float, list[float]]]]] = {}
    for row in main.itertuples():
        history = read_history(output_dir / row.run_dir)
        for record in history:
            epoch = record.get("epoch")
            for metric in ("train_loss", "eval_macro_f1"):
                value = record.get(metric)
                if isinstance(value, (int, float)) and isinstance(epoch, (int, float)) and math.isfinite(value):
                    panel = curves.setdefault((row.dataset, row.mode), {})
                    panel.setdefault(row.head, {}).setdefault(metric, {}).setdefault(float(epoch), []).append(float(value))
    if not curves:
        return None
    from matplotlib.figure import Figure

    panels = list(curves)
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 1.0 + 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    heads = list(dict.fromkeys(main["head"]))
    cmap = _colour_cycle(len(heads))
    for (ax_loss, ax_f1), panel in zip(axes, panels):
        for head, metrics in curves[panel].items():
            colour = cmap[heads.index(head)]
            for ax, metric in ((ax_loss, "train_loss"), (ax_f1, "eval_macro_f1")):
                if metric in metrics:
                    epochs = sorted(metrics[metric])
                    ax.plot(epochs, [np.mean(metrics[metric][e]) for e in epochs], color=colour, lw=1.2, marker="o", ms=4,
                            label=head)
        ax_loss.set_title(f"{panel[0]} ({panel[1]}): train loss", fontsize=11)
        ax_f1.set_title(f"{panel[0]} ({panel[1]}): validation macro-F1", fontsize=11)
        ax_loss.set_ylabel("train loss (cross-entropy)")
        ax_f1.set_ylabel("validation macro-F1")
        for ax in (ax_loss, ax_f1):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    entries: dict[str, Any] = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=10, frameon=False, title="head")
    fig.suptitle("Training curves: mean over the seeds still training at each epoch (early stopping); "
                 "controls omitted", fontsize=11)
    fig.savefig(path, dpi=100)
    return path


def _colour_cycle(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]
