"""The results PNG: KDF throughput, loop lag, time-to-Ready per N, cost per bundle size (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def require_matplotlib() -> None:
    """Fail loudly (before any measuring) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415, F401
    except ImportError:
        raise SystemExit(
            "bench: matplotlib is not installed in this environment; "
            "install it with `.venv/bin/pip install matplotlib==3.11.2`"
        ) from None


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency, checked by require_matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    k = result["kdf"]
    detail = k["detail"]
    scale = result["scale"]
    sizes = result.get("bundle_size") or []
    panels = 2 + bool(scale) + bool(sizes)
    figure, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.8))

    labels = ["raw 1 core", "inline"] + [f"pool {w}" for w in k["pool_per_s"]]
    spreads = [detail["raw"], detail["inline"]] + [detail["pool"][w] for w in k["pool_per_s"]]
    medians = [s["median"] for s in spreads]
    errors = [[s["median"] - s["min"] for s in spreads], [s["max"] - s["median"] for s in spreads]]
    ax = axes[0]
    ax.bar(labels, medians, yerr=errors, capsize=4, color=["#777"] + ["#3a7"] * (len(labels) - 1))
    ax.set_ylabel("derivations / s (median, min–max)")
    ax.set_title(f"PBKDF2 {k['iterations']:,} it.; cache hit: {k['cached_per_s']:,.0f}/s")

    lag = result["loop_lag_ms"]
    ax = axes[1]
    names = ["p50", "p99", "max"]
    ax.bar(names, [lag[n] for n in names], color="#48c", label=f"{lag['bundles']} bundles opening")
    ax.bar(names, [lag["baseline_idle"][n] for n in names], color="#ccc", width=0.4, label="idle baseline")
    ax.axhline(50, color="red", linestyle="--", label="p99 target 50 ms")
    ax.set_ylabel("ticker lateness (ms)")
    ax.set_title("event-loop lag during a decrypt storm")
    ax.legend(fontsize=8)

    if scale:
        ax = axes[2]
        for (mode, shards), marker in {("shared", 1): "o", ("distinct", 1): "s", ("shared", 2): "^"}.items():
            runs = [r for r in scale if r["mode"] == mode and r["shards"] == shards and r.get("ready_s") is not None]
            if runs:
                ax.plot(
                    [r["n"] for r in runs],
                    [r["ready_s"] for r in runs],
                    marker=marker,
                    linestyle="-",
                    label=f"{mode} passphrase, {shards} shard(s)",
                )
        ax.axhline(60, color="red", linestyle="--", label="target at N=1,000: 60 s")
        ax.set_xlabel("VaultBundles (N)")
        ax.set_ylabel("time to all Ready (s)")
        ax.set_title("scale on the test bed's kube-apiserver")
        ax.legend(fontsize=8)

    if sizes:
        ax = axes[-1]
        for label, runs in (
            ("keys grow", [b for b in sizes if not b["file_bytes"]]),
            ("file grows", [b for b in sizes if b["file_bytes"]]),
        ):
            envelope = [b["envelope_bytes"] for b in runs]
            ax.loglog(envelope, [b["total_ms"] for b in runs], marker="o", label=f"{label}: CPU")
            stalls = [b["loop_stall_ms"] for b in runs]
            ax.loglog(envelope, stalls, marker="s", linestyle=":", label=f"{label}: loop blocked")
        ax.axhline(50, color="red", linestyle="--", label="50 ms")
        ax.set_xlabel("envelope bytes (keys or file bytes grow)")
        ax.set_ylabel("ms per changed bundle (CPU: decrypt + parse + digest)")
        ax.set_title("cost per bundle size")
        ax.legend(fontsize=8)

    machine = result["machine"]
    figure.suptitle(
        f"vaultbundle bench ({result.get('mode')}) — {machine['cpus']} cores, loadavg "
        f"{machine['loadavg_start']} → {machine.get('loadavg_end')}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
