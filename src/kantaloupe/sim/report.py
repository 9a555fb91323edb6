"""Text tables and an HTML page that draw every GPU's memory slices."""

from __future__ import annotations

import html
import zlib

from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.sim.runner import Outcome, placements_by_device

_PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#469990",
    "#9a6324",
    "#800000",
    "#808000",
    "#000075",
    "#a9a9a9",
)


def colour(workload: str) -> str:
    return _PALETTE[zlib.crc32(workload.encode()) % len(_PALETTE)]


def placement_table(outcome: Outcome) -> str:
    """One line per GPU: node, model, memory and cores used, tenants by workload."""
    assert outcome.ledger is not None
    by_device = placements_by_device(outcome.ledger)
    lines = [f"{'node':<16} {'gpu':>3} {'model':<24} {'memory MiB':>17} {'cores':>7}  tenants"]
    for d in outcome.ledger.devices():
        tenants = by_device.get(d.device.uuid, [])
        counts: dict[str, int] = {}
        for pod, _m, _c in tenants:
            w = outcome.workload_of.get(pod, pod)
            counts[w] = counts.get(w, 0) + 1
        who = ", ".join(f"{w}×{n}" for w, n in sorted(counts.items())) or "-"
        memory = f"{d.used_memory_mib}/{d.device.memory_mib}"
        lines.append(
            f"{d.node:<16} {d.device.index:>3} {d.device.model[-24:]:<24} {memory:>17} "
            f"{d.used_cores:>3}/{d.device.cores:<3}  {who}"
        )
    return "\n".join(lines)


def html_report(title: str, outcome: Outcome, whole: Outcome, summary: dict[str, object]) -> str:
    """A self-contained page: summary table and one bar per GPU split into its slices."""
    assert outcome.ledger is not None
    ledger: Ledger = outcome.ledger
    by_device = placements_by_device(ledger)
    bar_w, bar_h, gap, label_w = 640, 22, 6, 260
    devices = list(ledger.devices())
    height = (bar_h + gap) * len(devices) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 20}" '
        f'height="{height}" role="img" aria-label="GPU memory slices">'
    ]
    for i, d in enumerate(devices):
        y = 5 + i * (bar_h + gap)
        label = html.escape(f"{d.node} #{d.device.index} {d.device.model}")
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{label}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{bar_h}" '
            'fill="#f4f4f4" stroke="#999"/>'
        )
        x = float(label_w)
        for pod, memory, cores in by_device.get(d.device.uuid, []):
            w = bar_w * memory / d.device.memory_mib
            workload = outcome.workload_of.get(pod, pod)
            tip = html.escape(f"{pod}: {memory} MiB, {cores}% cores")
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colour(workload)}" stroke="#fff"><title>{tip}</title></rect>'
            )
            x += w
    parts.append("</svg>")
    legend = "".join(
        f'<li><span style="background:{colour(w)}">&nbsp;&nbsp;&nbsp;</span> {html.escape(w)}</li>'
        for w in sorted(set(outcome.workload_of.values()))
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, dict | list)
    )
    pending = "".join(
        f"<li>{html.escape(uid)}: {html.escape(reason)}</li>"
        for uid, reason in sorted(outcome.pending.items())
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
        "ul.legend{list-style:none;display:flex;flex-wrap:wrap;gap:1em;padding:0}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<table>{rows}</table><h2>GPU memory slices</h2><ul class='legend'>{legend}</ul>"
        + "".join(parts)
        + f"<h2>Pending</h2><ul>{pending or '<li>none</li>'}</ul></body></html>"
    )
