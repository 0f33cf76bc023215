"""status.html: the status files' data as a page people would rather look at.

Self-contained (inline style, script and SVG; no network, no files beside it), so it works opened
from an sshfs mount with file://. Every name and reason comes from users or batch systems: all of
it is escaped. Readable on a phone; columns sort with a click (or from the address: `#sort=1` sorts by
the second column, `#sort=1-` the other way round).
"""

import time
from html import escape
from pathlib import Path
from typing import Sequence

from jobroot.model import age as _age

COLORS = {"running": "#1f77b4", "queued": "#6baed6", "submitting": "#9ecae1", "unknown": "#b8860b",
          "waiting": "#888", "held": "#aaa", "failed": "#c0392b", "cancelled": "#b8860b", "done": "#2e8b57"}  # fmt: skip

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1em;color:#222;background:#fff}
h1{font-size:1.2em;margin:0 0 .2em;word-break:break-all}.sub{color:#666;margin:0 0 .8em}
.counts span{display:inline-block;margin:0 .8em .3em 0;font-weight:600}
table{border-collapse:collapse;width:100%;margin-top:.6em}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f4f4f4;position:sticky;top:0}th:after{content:" \\2195";color:#aaa}
td.reason{word-break:break-word;color:#444}td.name{word-break:break-all;font-family:monospace}
.state{font-weight:600}svg{width:100%;max-width:640px;height:auto;display:block;margin:.4em 0}
@media (max-width:600px){th:nth-child(3),td:nth-child(3),th:nth-child(4),td:nth-child(4){display:none}}
"""

SCRIPT = r"""
document.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
var body=document.querySelector("tbody"),rows=Array.prototype.slice.call(body.rows),up=th.dataset.up!=="1";
document.querySelectorAll("th").forEach(function(h){h.dataset.up=""});th.dataset.up=up?"1":"0";
rows.sort(function(a,b){var x=a.cells[i].dataset.k||a.cells[i].textContent,y=b.cells[i].dataset.k||b.cells[i].textContent;
var n=parseFloat(x)-parseFloat(y);var c=isNaN(n)?x.localeCompare(y):n;return up?c:-c});
rows.forEach(function(r){body.appendChild(r)})})});
var m=/^#sort=(\d+)(-?)$/.exec(location.hash),th=m&&document.querySelectorAll("th")[+m[1]];
if(th){th.click();if(m[2])th.click()}
"""


def render(root: Path, entries: Sequence[tuple[str, str, str, float, str]], counts: dict[str, int], now: float) -> str:
    """The page. entries: (name, state, job id, since or 0, reason), busiest first; counts as --status gives them."""
    rows = []
    for name, state, job_id, since, reason in entries:
        age = f"{_age(now - since)}" if since else "-"
        rows.append(
            f'<tr><td class="name">{escape(name)}</td>'
            f'<td class="state" style="color:{COLORS.get(state, "#222")}" data-k="{_rank(state)}">{escape(state)}</td>'
            f'<td data-k="{escape(job_id)}">{escape(job_id or "-")}</td><td data-k="{since or 0:.0f}">{age}</td>'
            f'<td class="reason">{escape(reason)}</td></tr>'
        )
    shown = "".join(
        f'<span style="color:{COLORS.get(state, "#222")}">{n} {escape(state)}</span>' for state, n in counts.items() if n
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    ended = [(since, state) for _, state, _, since, _ in entries if state in ("done", "failed") and since]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>jobs: {escape(root.name or str(root))}</title><style>{STYLE}</style></head><body>"
        f'<h1>{escape(str(root))}</h1><p class="sub">as of {when}; rewritten by every run</p>'
        f'<div class="counts">{shown or "no jobs"}</div>{_chart(ended, now)}'
        "<table><thead><tr><th>name</th><th>state</th><th>job id</th><th>for</th><th>reason</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table><script>{SCRIPT}</script></body></html>\n"
    )


def _chart(ended: list[tuple[float, str]], now: float, bins: int = 24) -> str:
    """Recent endings over time: one bar per time slice, done below failed."""
    if not ended:
        return ""
    start = min(t for t, _ in ended)
    span = max(now - start, 60.0)
    counts = [[0, 0] for _ in range(bins)]
    for t, state in ended:
        slot = min(int((t - start) / span * bins), bins - 1)
        counts[slot][state == "failed"] += 1
    top = max(d + f for d, f in counts) or 1
    width, height, bar = 480, 80, 480 / bins
    parts = []
    for i, (done, failed) in enumerate(counts):
        x, y = i * bar + 1, float(height)
        for n, color in ((done, COLORS["done"]), (failed, COLORS["failed"])):  # failed stacked on done
            if n:
                h = n / top * height
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="{color}"/>')
    label = f"{len(ended)} recent endings over the last {_age(span)}: done (green) and failed (red)"
    return (
        f'<svg viewBox="0 0 {width} {height + 16}" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'{"".join(parts)}<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>'
        f'<text x="0" y="{height + 13}" font-size="11" fill="#666">{_age(span)} ago</text>'
        f'<text x="{width}" y="{height + 13}" font-size="11" fill="#666" text-anchor="end">now</text></svg>'
    )


def _rank(state: str) -> int:
    order = list(COLORS)
    return order.index(state) if state in order else len(order)
