"""chart.svg: the figures against their targets and against their anchors, as log-scale bars
(hand-written SVG: no plotting dependency)."""

import math

from .rows import fmt_num

W, ROWH, LEFT, BARW = 1060, 24, 370, 420  # picture width, row height, label column, bar span


def svg_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def score(r):
    """How far a figure is from its target: measured/target for ≥ targets, target/measured for
    ≤ targets (1 = on target)."""
    v = r["ratio"] if r["target_on"] == "ratio" else r["measured"]
    if v is None or r["target"] is None or v <= 0:
        return None
    return v / r["target"] if r["target_op"] == ">=" else r["target"] / v


def _log_axis(items):
    """The x position of a value on a log axis spanning the panel's values (and 0.1 to 10)."""
    vals = [v for _, v in items if v]
    lo = max(min([0.1] + vals) / 1.5, 1e-4)
    hi = min(max([10.0] + vals) * 1.5, 1e5)
    span = math.log10(hi) - math.log10(lo)

    def x(v):
        v = min(max(v, lo), hi)
        return LEFT + (math.log10(v) - math.log10(lo)) / span * BARW

    return lo, hi, x


def _bar_label(r, v, targets):
    if targets:
        shown = fmt_num(r["measured"], r["unit"]) if r["target_on"] == "measured" else f"{r['ratio']:.2f}×"
        return ("#3a3" if r["met"] else "#c33"), f"{shown} (target {r['target_desc']})"
    return "#47a", f"{v:.3g}×  ({fmt_num(r['measured'], r['unit'])} vs {fmt_num(r['anchor'], r['anchor_unit'])})"


def _panel(out, y, ptitle, items, targets):
    """Appends one panel's SVG at height y; returns the height below it."""
    lo, hi, x = _log_axis(items)
    out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{svg_escape(ptitle)}</text>')
    top = y + 26
    bottom = top + len(items) * ROWH
    for d in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1):
        gx = x(10 ** d)
        out.append(f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#666">{10.0 ** d:g}</text>')
    for i, (r, v) in enumerate(items):
        ry = top + i * ROWH
        out.append(f'<text x="{LEFT - 8}" y="{ry + 16}" text-anchor="end">'
                   f'{svg_escape((r["id"] + " " + r["name"])[:58])}</text>')
        if v is None:
            out.append(f'<text x="{LEFT + 4}" y="{ry + 16}" fill="#a00">{"error" if r["error"] else "n/a"}</text>')
            continue
        color, txt = _bar_label(r, v, targets)
        xb = x(v)
        out.append(f'<rect x="{LEFT}" y="{ry + 4}" width="{max(xb - LEFT, 1):.1f}" height="{ROWH - 8}" fill="{color}"/>')
        out.append(f'<text x="{xb + 5:.1f}" y="{ry + 16}" fill="#222">{svg_escape(txt)}</text>')
    one = x(1)
    out.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{bottom + 2}" stroke="#000" '
               'stroke-dasharray="4,3"/>')
    return bottom + 30


def chart_svg(rows, title):
    """Two stacked panels of log-scale bars. Top: how far each figure is from its target (see
    score(); green = met). Bottom: ratio measured / anchor (1 = as fast / as large as the
    anchor)."""
    out = []
    y = _panel(out, 40, "Measured vs target (log scale; right of the dashed line = target met)",
               [(r, score(r)) for r in rows if r["target"] is not None], targets=True)
    y = _panel(out, y, "Ratio measured / anchor, both from this run (log scale)",
               [(r, r["ratio"]) for r in rows if r["ratio"] is not None or (r["anchor_desc"] and r["error"])],
               targets=False)
    h = y + 10
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
            'font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{h}" fill="white"/>',
            f'<text x="10" y="24" font-size="15" font-weight="bold">{svg_escape(title)}</text>']
    return "\n".join(head + out + ["</svg>"]) + "\n"
