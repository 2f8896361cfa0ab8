"""Results out: the JSON file, the Markdown table with the issue's target ratios, PNG charts."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import rounds


@dataclass(frozen=True)
class RatioTarget:
    """``num / den`` of ``key`` within each round, bounded from below (or above, ``at_most``)."""

    label: str
    num: str
    den: str
    bound: float
    key: str = "throughput_eps"
    at_most: bool = False

    def met(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound


def _cpu_at_most(label: str, num: str, den: str, bound: float) -> RatioTarget:
    return RatioTarget(f"{label} CPU per event ≤ {bound:g} x {den}", num, den, bound, "cpu_s_per_1k", True)


def _eps_at_least(label: str, num: str, den: str, bound: float) -> RatioTarget:
    return RatioTarget(f"{label} events/s ≥ {bound:g} x {den}", num, den, bound)


# the targets of issue 25, from the same run; CPU per event is the steadier figure (cpu_ratios)
RATIO_TARGETS = (
    _cpu_at_most("forwarding", "engine_forward", "aiokafka_batch", 1.6),
    _cpu_at_most("fraud", "engine_fraud", "aiokafka_batch", 7.0),
    _eps_at_least("fraud", "engine_fraud", "quix_fraud", 3.0),
    _cpu_at_most("forwarding", "engine_forward", "kstreams_forward", 1.0),
    _cpu_at_most("window", "engine_window", "kstreams_window", 0.5),
    _cpu_at_most("join", "engine_join", "kstreams_join", 0.5),
    _cpu_at_most("fraud", "engine_fraud", "kstreams_fraud", 0.5),
    _cpu_at_most("fraud exactly_once", "engine_fraud_eos", "kstreams_fraud_eos", 0.5),
    _eps_at_least("forwarding, --processes 2,", "engine_forward_p2", "kstreams_forward", 0.8),
    _eps_at_least("fraud, --processes 2,", "engine_fraud_p2", "engine_fraud", 1.5),
)
# reference ratios between the baselines (no target; for reading the table)
INFO_RATIOS = (
    ("send per record / batched aiokafka", "aiokafka_send", "aiokafka_batch"),
    ("Quix forward / batched aiokafka", "quix_forward", "aiokafka_batch"),
    ("engine forward / batched aiokafka", "engine_forward", "aiokafka_batch"),
    ("engine forward / Quix forward", "engine_forward", "quix_forward"),
    ("bare Faust agent / batched aiokafka", "faust_agent", "aiokafka_batch"),
    ("Quix fraud / Quix forward", "quix_fraud", "quix_forward"),
    # the `window` and `join` kinds (issue 13): ours against Quix Streams doing the same
    ("engine window / Quix window", "engine_window", "quix_window"),
    ("engine join / Quix join", "engine_join", "quix_join"),
    ("engine join exactly_once / at_least_once", "engine_join_eos", "engine_join"),
)
# CPU per event of ours against another engine doing the same (per-round ratios, as cpu_ratios);
# Kafka Streams' and Quix's fraud have no model term, so engine_fraud_rules is their like-for-like
CPU_PAIRS = (
    ("engine_window", "quix_window"),
    ("engine_join", "quix_join"),
    ("engine_join_eos", "quix_join"),
    ("engine_fraud_rules", "quix_fraud"),
    ("engine_fraud_rules", "kstreams_fraud"),
)
P99_TARGET_RATE = 5000
# (contender, p99 target in ms at P99_TARGET_RATE), issue 25's: exactly-once commits a transaction
# per input partition and batch before its outputs are readable, so it gets a looser target
P99_TARGETS = (("engine_forward", 50.0), ("engine_fraud", 100.0), ("engine_fraud_eos", 150.0))
SOAK_GROWTH_TARGET = 10.0
BUSY_CORES = 0.5  # other processes' load above which a run is counted as disturbed in the report


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _tput(results: dict[str, Any], name: str) -> float | None:
    c = results["contenders"].get(name)
    return c.get("throughput_eps") if c and c.get("status") == "ok" else None


def ratio(results: dict[str, Any], num: str, den: str, key: str = "throughput_eps") -> dict[str, Any] | None:
    """num / den of ``key`` as the median of per-round ratios with their spread (rounds.py), or None.

    Results without round numbers (written before rounds existed) give the ratio of medians.
    """
    if _tput(results, num) is None or _tput(results, den) is None:
        return None
    a, b = results["contenders"][num], results["contenders"][den]
    s = rounds.ratio_summary(a.get("runs", []), b.get("runs", []), key=key)
    if s["n"]:
        return s
    if not a.get(key) or not b.get(key):
        return None
    return rounds.spread([a[key] / b[key]])


def _tput_cell(c: dict[str, Any]) -> str:
    spread = c.get("spread", {}).get("throughput_eps")
    return rounds.fmt_spread(spread) if spread else _num(c.get("throughput_eps"))


def _cpu_cell(c: dict[str, Any]) -> str:
    spread = c.get("spread", {}).get("cpu_s_per_1k")
    return rounds.fmt_spread(spread, "{:.3f}") if spread else _num(c.get("cpu_s_per_1k"), "{:.3f}")


def cpu_ratios(results: dict[str, Any], den: str = "aiokafka_batch") -> list[str]:
    """CPU per event of every contender relative to ``den``'s, as medians of per-round ratios.

    The steadier companion of the throughput ratios: CPU seconds per event hardly move with the
    machine's load (batched aiokafka: 0.006 s/1k in every run while its rate ranged 2x), because
    a busy machine makes a process wait, not work more.
    """
    d = results["contenders"].get(den)
    if not d or d.get("status") != "ok":
        return []
    out = []
    for name, c in results["contenders"].items():
        if name == den or c.get("status") != "ok":
            continue
        s = rounds.ratio_summary(c.get("runs", []), d.get("runs", []), key="cpu_s_per_1k")
        if s["n"]:
            out.append(f"{name} {rounds.fmt_spread(s, '{:.1f}')}")
    return out


def targets(results: dict[str, Any], soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for t in RATIO_TARGETS:
        s = ratio(results, t.num, t.den, t.key)
        value = s["median"] if s else None
        rows.append(
            {
                "target": t.label,
                "value": value,
                "spread": s,
                "met": None if value is None else t.met(value),
                "note": "" if value is not None else f"needs {t.num} and {t.den}",
            }
        )
    for name, target_ms in P99_TARGETS:
        if name not in results["contenders"]:
            continue
        lat = results["contenders"][name].get("latency", {}).get(str(P99_TARGET_RATE))
        p99 = lat.get("p99_ms") if lat else None
        rows.append(
            {
                "target": f"{name} p99 ≤ {target_ms:.0f} ms at {P99_TARGET_RATE // 1000}k ev/s",
                "value": p99,
                "unit": "ms",
                "met": None if p99 is None else p99 <= target_ms,
                "note": "" if p99 is not None else f"needs {name} latency at {P99_TARGET_RATE}/s",
            }
        )
    growth = soak.get("rss_growth_pct") if soak else None
    rows.append(
        {
            "target": f"soak RSS growth < {SOAK_GROWTH_TARGET:.0f} %",
            "value": growth,
            "unit": "%",
            "met": None if growth is None else growth < SOAK_GROWTH_TARGET,
            "note": f"{soak['contender']}, {soak['minutes']} min at {soak['rate']}/s"
            if soak
            else "run `python -m benchmarks soak`",
        }
    )
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    d = results["data"]
    cfg = results["config"]
    rates = cfg["rates"]
    lines = [
        f"### Benchmark results ({'quick' if cfg['quick'] else 'full'} run, {results['started_at']})",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} cores, {m['ram_gb']} GB RAM, {m['os']}; "
        f"Python {m['python']}; Apache Kafka {m['kafka']} at {m['bootstrap']} on the same machine. "
        f"Load average at start {m['load_avg_start']}, at end {m.get('load_avg_end')}.",
        f"Data: {d['records']:,} JSON transactions (~{d['avg_bytes']:.0f} B) "
        f"over {d['partitions']} partitions, "
        f"{d['customers']:,} customer profiles; throughput is the median of {cfg['runs']} round(s) "
        f"(min-max over the rounds in brackets; contender order rotated per round, "
        f"{cfg.get('warmup_rounds', 0)} warm-up round(s) discarded); latency "
        f"offered for {cfg['latency_seconds']:g} s per rate.",
        *_load_line(results),
        *_stream_data_lines(results),
        "",
    ]
    head = ["contender", "events/s", "CPU s / 1k ev", "peak RSS MB"]
    head += [f"p50 / p99 / p99.9 ms @ {r // 1000}k/s" for r in rates]
    head.append("others' cores")  # median CPU other processes used in this contender's windows
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in results["contenders"].items():
        if c["status"] != "ok":
            lines.append(
                f"| {name} | {c['status']}: {c.get('reason', '').splitlines()[0][:90]} |"
                + " |" * (len(head) - 2)
            )
            continue
        row = [
            f"{name}{' (ours)' if c.get('ours') else ''}",
            _tput_cell(c),
            _cpu_cell(c),
            _num(c.get("peak_rss_mb")),
        ]
        for r in rates:
            lat = c.get("latency", {}).get(str(r))
            if not lat or lat.get("error"):
                row.append("-" if not lat else "failed")
                continue
            cell = " / ".join(_num(lat.get(k), "{:.1f}") for k in ("p50_ms", "p99_ms", "p999_ms"))
            if lat.get("saturated"):
                cell += f" (saturated: {lat['received']:,}/{lat['sent']:,} through)"
            if lat.get("offered_short"):
                cell += f" (offered only {lat['offered_eps']:,.0f}/s)"
            row.append(cell)
        others = rounds.spread(r["window_cores"]["others"] for r in c.get("runs", []) if "window_cores" in r)
        row.append(_num(others["median"], "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    scaling = {n: c["scaling"] for n, c in results["contenders"].items() if c.get("scaling")}
    if scaling:
        counts = sorted({int(k) for s in scaling.values() for k in s})
        lines += [
            "",
            "Scaling (events/s with N worker processes in one group; "
            f"{m['logical_cores']} cores, so this mostly shows the limit):",
            "",
            "| contender | " + " | ".join(f"{n} worker{'s' if n > 1 else ''}" for n in counts) + " |",
            "|---|" + "---|" * len(counts),
        ]
        for name, s in scaling.items():
            lines.append(
                f"| {name} | "
                + " | ".join(
                    _num(s.get(str(n), {}).get("throughput_eps"))
                    if not s.get(str(n), {}).get("error")
                    else "failed"
                    for n in counts
                )
                + " |"
            )
    lines += [
        "",
        "Targets (issue 25; each ratio is the median of the per-round ratios of this run, min-max over "
        "the rounds in brackets):",
        "",
        "| target | value | met |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        unit = t.get("unit", "x")
        if t["value"] is None:
            value = "-"
        elif unit == "x":
            value = rounds.fmt_spread(t.get("spread") or rounds.spread([t["value"]]), "{:.2f}") + " x"
        else:
            value = f"{t['value']:.1f} {unit}"
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {met}{' (' + t['note'] + ')' if t['note'] else ''} |")
    info = []
    for label, num, den in INFO_RATIOS:
        s = ratio(results, num, den)
        if s:
            info.append(f"{label} {rounds.fmt_spread(s, '{:.2f}')}")
    if info:
        lines += ["", "Baseline ratios: " + "; ".join(info) + "."]
    cpu = cpu_ratios(results)
    if cpu:
        head = "CPU per event relative to aiokafka_batch (median of per-round ratios): "
        lines += ["", head + "; ".join(cpu) + "."]
    pairs = []
    for num, den in CPU_PAIRS:
        a, b = results["contenders"].get(num), results["contenders"].get(den)
        if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
            continue
        s = rounds.ratio_summary(a.get("runs", []), b.get("runs", []), key="cpu_s_per_1k")
        if s["n"]:
            pairs.append(f"{num} / {den} {rounds.fmt_spread(s, '{:.2f}')}")
    if pairs:
        lines += [
            "",
            "CPU per event, ours / another engine doing the same (median of per-round ratios): "
            + "; ".join(pairs)
            + ".",
        ]
    lines += _read_lead_lines(results)
    return "\n".join(lines) + "\n"


def _read_lead_lines(results: dict[str, Any]) -> list[str]:
    """Per join contender and round, which side it read ahead and by how much (read_lead.py)."""
    rows = []
    for name, c in results["contenders"].items():
        for r in c.get("runs", []):
            lead = r.get("read_lead")
            if lead and lead.get("samples"):
                share = lead["payments_ahead_share"]
                rows.append(
                    f"| {name} | {r.get('round', 0) + 1} | {lead['led']} | {abs(lead['median_s']):,.0f} | "
                    f"{lead['p90_abs_s']:,.0f} | {lead['max_abs_s']:,.0f} | {share:.0%} |"
                )
    if not rows:
        return []
    return [
        "",
        "Read order of the join contenders (event time of the last committed payment minus that of the "
        "last committed settlement, per partition, sampled every 0.5 s; benchmarks/read_lead.py):",
        "",
        "| contender | round | side ahead (median) | median s | p90 abs s | max abs s | payments ahead |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows,
    ]


def _stream_data_lines(results: dict[str, Any]) -> list[str]:
    """The data sets of the `window` and `join` kinds, when the run had them."""
    d = results.get("data", {})
    out = []
    if "window" in d:
        w = d["window"]
        out.append(
            f"Window data: {w['events']:,} transactions keyed by merchant_id (~{w['avg_bytes']:.0f} B, "
            f"{w['merchants']} merchants, {w['minutes']} min of event time, a closing record per partition); "
            f"{w['expected_outputs']:,} one-minute windows expected, so each output stands for "
            f"{w['events_per_output']:.2f} input events."
        )
    if "join" in d:
        j = d["join"]
        out.append(
            f"Join data: {j['payments']:,} payments + {j['settlements']:,} settlements = {j['events']:,} "
            "events "
            f"(~{j['avg_bytes']:.0f} B; {j['source']}); {j['expected_outputs']:,} outcomes expected "
            f"({j['expected']}), so each output stands for {j['events_per_output']:.2f} input events."
        )
    return out


def _load_line(results: dict[str, Any]) -> list[str]:
    """How much CPU other processes took during the measured windows: the noise behind the spread."""
    others = [
        r["window_cores"]["others"]
        for c in results["contenders"].values()
        for r in c.get("runs", [])
        if "window_cores" in r
    ]
    if not others:
        return []
    s = rounds.spread(others)
    busy = sum(1 for x in others if x > BUSY_CORES)
    return [
        f"Other processes used {s['median']:.2f} cores (median; max {s['max']:.2f}) of the machine during "
        f"the throughput windows; {busy} of {len(others)} runs competed with more than {BUSY_CORES} cores."
    ]


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ok = {n: c for n, c in results["contenders"].items() if c["status"] == "ok"}
    if ok:
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(ok) + 1.5))
        names = list(ok)
        values = [ok[n]["throughput_eps"] for n in names]
        colors = ["tab:green" if ok[n].get("ours") else "tab:blue" for n in names]
        spreads = [ok[n].get("spread", {}).get("throughput_eps") or {} for n in names]
        # whiskers: min and max over the rounds around the median bar
        err = [
            [max(0.0, v - (s.get("min") or v)) for v, s in zip(values, spreads, strict=True)],
            [max(0.0, (s.get("max") or v) - v) for v, s in zip(values, spreads, strict=True)],
        ]
        ax.barh(names, values, color=colors, xerr=err, capsize=3, ecolor="0.3")
        for i, (v, sp) in enumerate(zip(values, spreads, strict=True)):
            ax.text(max(v, sp.get("max") or v), i, f" {v:,.0f}", va="center", fontsize=8)  # past the whisker
        ax.invert_yaxis()
        ax.set_xlabel("events/s (median of rounds; whiskers min-max)")
        ax.set_title(
            f"Sustained throughput — {results['machine']['cpu_model']}, "
            f"{results['machine']['logical_cores']} cores"
        )
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    lat = {n: c["latency"] for n, c in ok.items() if c.get("latency")}
    if lat:
        rates = results["config"]["rates"]
        fig, axes = plt.subplots(1, len(rates), figsize=(4.5 * len(rates), 3.8), squeeze=False)
        for ax, rate in zip(axes[0], rates, strict=True):
            names = [n for n in lat if str(rate) in lat[n] and not lat[n][str(rate)].get("error")]
            for q, key in ((0, "p50_ms"), (1, "p99_ms"), (2, "p999_ms")):
                xs = [i + (q - 1) * 0.27 for i in range(len(names))]
                ax.bar(
                    xs,
                    [lat[n][str(rate)][key] for n in names],
                    width=0.27,
                    label={"p50_ms": "p50", "p99_ms": "p99", "p999_ms": "p99.9"}[key],
                )
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("ms")
            ax.set_title(f"end-to-end latency @ {rate:,}/s")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["started_at"].replace(":", "").replace("-", "")[:15]
    text = json.dumps(results, indent=2, default=str)
    paths = {"json": out / f"run-{stamp}.json", "latest_json": out / "latest.json", "md": out / "latest.md"}
    paths["json"].write_text(text)
    paths["latest_json"].write_text(text)
    paths["md"].write_text(markdown(results))
    for i, p in enumerate(charts(results, out)):
        paths[f"chart{i}"] = p
    return paths
