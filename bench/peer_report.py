"""The side-by-side report of bench/peer.py: ratio rows (ours ÷ ESO), the Markdown tables and the plot.

Pure functions of the results JSON (no test bed), unit-tested in tests/unit/test_bench_peer.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plot import require_matplotlib

__all__ = ["METRICS", "machine_line", "markdown", "metric_value", "plot", "ratio", "ratio_rows", "require_matplotlib"]

# (key, label, how to read it from one run); lower is better for every one of them
METRICS: tuple[tuple[str, str], ...] = (
    ("ready_s", "time to all Ready (s)"),
    ("rss_mib", "RSS (MiB)"),
    ("operator_cpu_ready_s", "operator CPU until Ready (core-s)"),
    ("apiserver_cpu_ready_s", "kube-apiserver CPU until Ready (core-s)"),
    ("operator_cpu_idle_s", "operator CPU, idle window (core-s)"),
    ("apiserver_cpu_idle_s", "kube-apiserver CPU, idle window (core-s)"),
    ("idle_api_writes", "idle window: API writes"),
    ("idle_provider_requests", "idle window: provider / S3 requests"),
    ("change_propagation_s", "changed secret → Secret, refresh path (s)"),
    ("change_after_detection_s", "changed secret → Secret after force-sync (s)"),
)


def metric_value(run: dict[str, Any], key: str) -> float | None:
    """One metric of one run (None when the run did not get that far)."""
    if key == "rss_mib":
        rss = run.get("rss") or run.get("rss_after_ready")
        return None if not rss else float(rss["main_mib"])
    if key.endswith("_cpu_ready_s") or key.endswith("_cpu_idle_s"):
        who, _, phase = key.removesuffix("_s").partition("_cpu_")
        cpu = run.get(f"cpu_s_during_{phase}")
        name = "operator" if who == "operator" else "kube-apiserver"
        return None if not cpu or name not in cpu else float(cpu[name])
    if key == "idle_provider_requests":
        # moto's own request log when it could be read, else the operator's metric
        moto = run.get("idle_moto_requests")
        value = moto if isinstance(moto, int) and moto >= 0 else run.get("idle_provider_requests")
        return None if value is None else float(value)
    value = run.get(key)
    return None if value is None else float(value)


def ratio(ours: float | None, eso: float | None) -> float | None:
    """ours ÷ ESO, 3 significant digits; None when either is missing or ESO's is 0 (see `_ratio_text`)."""
    if ours is None or eso is None or eso == 0:
        return None
    return float(f"{ours / eso:.3g}")


def _find(runs: list[dict[str, Any]], operator: str, setting: str, n: int) -> dict[str, Any] | None:
    return next((r for r in runs if r["operator"] == operator and r["setting"] == setting and r["n"] == n), None)


def ratio_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per N and setting both operators ran: every metric for ours and ESO, and ours ÷ ESO."""
    runs = result["runs"]
    rows: list[dict[str, Any]] = []
    for n in sorted({r["n"] for r in runs}):
        for setting in ("default", "tuned"):
            ours, eso = _find(runs, "vaultbundle", setting, n), _find(runs, "eso", setting, n)
            if ours is None or eso is None:
                continue
            values = {
                key: {
                    "ours": (a := metric_value(ours, key)),
                    "eso": (b := metric_value(eso, key)),
                    "ratio": ratio(a, b),
                }
                for key, _ in METRICS
            }
            rows.append({"n": n, "setting": setting, "metrics": values})
    return rows


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ratio_text(cell: dict[str, float | None]) -> str:
    if cell["ratio"] is not None:
        return f"{cell['ratio']:g}"
    if cell["ours"] is not None and cell["eso"] == 0:
        return "both 0" if cell["ours"] == 0 else "ESO 0"
    return "—"


def _setting_text(run: dict[str, Any]) -> str:
    return str(run["setting"]) + (f" (`{' '.join(run['args'])}`)" if run.get("args") else "")


def machine_line(result: dict[str, Any], what: str) -> str:
    """The line above a results table: machine, commit, *what* ran, the load average sampled during the run."""
    m = result["machine"]
    load = (result.get("load") or {}).get("loadavg_1m") or {}
    return (
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['mem_total_mib']} MiB; commit {m['git_commit']}; {what}; "
        f"1-min load average during the run: median {load.get('median', '—')} "
        f"[{load.get('min', '—')}–{load.get('max', '—')}]. {m['load_note']}"
    )


def markdown(result: dict[str, Any]) -> str:
    what = f"ESO {result['eso_version']}, refreshInterval {result['refresh_interval_s']:g} s for both"
    lines = [
        machine_line(result, what),
        "",
        "| N | operator | setting | Ready (s) | RSS (MiB) | CPU until Ready: operator / apiserver (core-s) "
        "| idle window (s): API writes / provider req. | idle CPU: operator / apiserver (core-s) "
        "| change: refresh path / force-sync (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:

        def v(key: str, r: dict[str, Any] = run) -> str:
            return _num(metric_value(r, key))

        lines.append(
            f"| {run['n']:,} | {run['operator']} | {_setting_text(run)} | {v('ready_s')} | {v('rss_mib')} "
            f"| {v('operator_cpu_ready_s')} / {v('apiserver_cpu_ready_s')} "
            f"| {_num(run.get('idle_window_s'))}: {v('idle_api_writes')} "
            f"/ {v('idle_provider_requests')} "
            f"| {v('operator_cpu_idle_s')} / {v('apiserver_cpu_idle_s')} "
            f"| {v('change_propagation_s')} / {v('change_after_detection_s')} |"
        )
    rows = result.get("ratios") or ratio_rows(result)
    if rows:
        lines += [
            "",
            'Ratios ours ÷ ESO (below 1: vaultbundle uses less or is faster; "both 0": neither did any):',
            "",
            "| N | setting | " + " | ".join(label for _, label in METRICS) + " |",
            "|---|---|" + "---|" * len(METRICS),
        ]
        for row in rows:
            cells = " | ".join(_ratio_text(row["metrics"][key]) for key, _ in METRICS)
            lines.append(f"| {row['n']:,} | {row['setting']} | {cells} |")
    failed = [r for r in result["runs"] if r.get("error")]
    for run in failed:
        lines += ["", f"{run['operator']} {run['setting']} N={run['n']}: {run['error']}"]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency, checked by require_matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = result["runs"]
    sizes = sorted({r["n"] for r in runs})
    series = sorted({(r["operator"], r["setting"]) for r in runs})
    panels = (
        ("ready_s", "time to all Ready (s)"),
        ("rss_mib", "RSS (MiB)"),
        ("operator_cpu_ready_s", "operator CPU until Ready (core-s)"),
        ("apiserver_cpu_ready_s", "kube-apiserver CPU until Ready (core-s)"),
        ("idle_api_writes", "API writes in one refresh interval, idle"),
        ("idle_provider_requests", "provider/S3 requests in one refresh interval, idle"),
    )
    figure, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    width = 0.8 / max(1, len(series))
    colours = {"eso": ["#d62", "#f95", "#fb8"], "vaultbundle": ["#27a", "#6ad", "#9cf"]}
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for index, (operator, setting) in enumerate(series):
            values = []
            for n in sizes:
                run = _find(runs, operator, setting, n)
                value = None if run is None else metric_value(run, key)
                values.append(0.0 if value is None else value)
            shade = [s for o, s in series if o == operator].index(setting)
            ax.bar(
                [i + index * width for i in range(len(sizes))],
                values,
                width,
                label=f"{'ESO' if operator == 'eso' else 'vaultbundle'} {setting}",
                color=colours[operator][min(shade, 2)],
            )
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(sizes))], [f"N={n:,}" for n in sizes])
        ax.set_title(title, fontsize=10)
    axes.flat[0].legend(fontsize=8)
    machine = result["machine"]
    load = (result.get("load") or {}).get("loadavg_1m") or {}
    figure.suptitle(
        f"vaultbundle vs External Secrets Operator {result['eso_version']} on one test bed — {machine['cpus']} "
        f"cores, refresh {result['refresh_interval_s']:g} s, load avg median {load.get('median', '—')}",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
