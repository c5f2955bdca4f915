"""Visual QC reports: self-contained HTML (images embedded as base64 PNG, no network access),
one per T1w image and one for the group. Figures are drawn with matplotlib's Agg backend.

Slices are shown on the model grid, which is rigidly aligned to the template: left is on the
left, anterior at the top of axial slices.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from .labels import label_table  # noqa: E402

VIEWS = ("axial", "coronal", "sagittal")
_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
MASK_COLOUR = "#ff3030"
TEMPLATE_COLOUR = "#30d0ff"
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.5em}
img{max-width:100%;display:block;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ddd;padding:2px 8px}
th{background:#f4f4f4} td.num{text-align:right}
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;color:#fff;font-weight:bold}
.pass{background:#2a8a3a} .warn{background:#d08a00} .fail{background:#c02a2a}
tr.flag td{background:#fde8e8} .swatch{display:inline-block;width:1em;height:1em;
vertical-align:middle;border:1px solid #888}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    # In the figure's facecolor. No bbox_inches="tight": it draws the figure twice; the
    # figures set their own margins instead.
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    # Transposed so that the second grid axis (or the third) runs up the page.
    return np.take(volume, index, axis=_AXIS[view]).T


def _slice_indices(brain: np.ndarray, view: str, n: int) -> list[int]:
    other = tuple(a for a in range(3) if a != _AXIS[view])
    present = np.flatnonzero(brain.any(axis=other))
    if not len(present):
        present = np.arange(brain.shape[_AXIS[view]])
    lo, hi = present[0], present[-1]
    return [int(round(v)) for v in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), n)]


def mosaic(image: np.ndarray, brain: np.ndarray, *, labels: np.ndarray | None = None,
           outlines: tuple[tuple[np.ndarray, str], ...] = (), n_slices: int = 7) -> str:
    """A 3-row (axial, coronal, sagittal) mosaic as a base64 PNG: the image in grey, the
    label map in the label table's colours, and each ``(mask, colour)`` as an outline."""
    colours = ListedColormap([lab.color for lab in label_table()])
    fig, axes = plt.subplots(3, n_slices, figsize=(1.9 * n_slices, 6.6), facecolor="black")
    vmax = float(np.percentile(image[brain], 99.5)) if brain.any() else float(image.max())
    for row, view in zip(axes, VIEWS):
        for ax, index in zip(row, _slice_indices(brain, view, n_slices)):
            ax.imshow(_slice(image, view, index), cmap="gray", vmin=0, vmax=vmax or 1,
                      origin="lower", interpolation="nearest")
            if labels is not None:
                lab = _slice(labels, view, index)
                ax.imshow(np.ma.masked_equal(lab, 0), cmap=colours, vmin=0,
                          vmax=len(label_table()) - 1, alpha=0.5, origin="lower",
                          interpolation="nearest")
            for mask, colour in outlines:
                sl = _slice(mask, view, index).astype(float)
                if sl.min() != sl.max():
                    ax.contour(sl, levels=[0.5], colors=colour, linewidths=0.8)
            ax.set_axis_off()
            ax.set_title(f"{view} {index}", color="white", fontsize=7)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.965, wspace=0.02,
                        hspace=0.12)
    return _png(fig)


@dataclass
class ImageReport:
    title: str
    source: str
    qc: dict  # QCResult.to_dict()
    volumes: dict[str, float]
    z_scores: dict[str, float]
    provenance: dict
    figures: dict[str, str] = field(default_factory=dict)  # caption -> base64 PNG


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def _verdict(verdict: str) -> str:
    return f'<span class="verdict {verdict}">{verdict.upper()}</span>'


def _table(header: list[str], rows: list[list[str]], flags: list[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = ' class="flag"' if flags and flags[k] else ""
        cells = "".join(f'<td class="num">{c}</td>' if c[:1].isdigit() or c[:1] == "-"
                        else f"<td>{c}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_image_report(r: ImageReport) -> str:
    from .qc import STRUCTURE_Z

    parts = [f"<h1>{html.escape(r.title)}</h1>",
             f"<p>Source: <code>{html.escape(r.source)}</code></p>",
             f"<h2>QC verdict</h2><p>{_verdict(r.qc['verdict'])}</p>"]
    reasons = r.qc["reasons"] or ["no QC signal crossed a threshold"]
    parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in reasons) + "</ul>")
    parts.append(_table(["signal", "value"], [
        ["mean confidence (max probability, brain)", f"{r.qc['mean_confidence']:.3f}"],
        ["mean normalised entropy (brain)", f"{r.qc['mean_entropy']:.3f}"],
        ["total brain volume z-score", f"{r.qc['total_brain_z']:.2f}"],
        [f"structures with |z| &gt; {STRUCTURE_Z:g}", str(len(r.qc["structure_outliers"]))],
    ]))
    for caption, png in r.figures.items():
        parts.append(f"<h2>{html.escape(caption)}</h2>"
                     f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">')
    colours = {lab.name: lab.color for lab in label_table()}
    rows, flags = [], []
    for name, volume in r.volumes.items():
        z = r.z_scores.get(name)
        swatch = (f'<span class="swatch" style="background:{colours[name]}"></span> '
                  if name in colours else "")
        rows.append([swatch + html.escape(name), f"{volume:.0f}",
                     "n/a" if z is None else f"{z:.2f}"])
        flags.append(z is not None and abs(z) > STRUCTURE_Z)
    parts.append("<h2>Volumes (mm³, native grid)</h2>"
                 "<p>z-scores against the training participants' manual label maps; rows "
                 f"with |z| &gt; {STRUCTURE_Z:g} are highlighted.</p>")
    parts.append(_table(["structure", "volume", "z"], rows, flags))
    parts.append("<h2>Provenance</h2>")
    prov_rows = [[html.escape(k), html.escape(str(v))] for k, v in r.provenance.items()
                 if not isinstance(v, dict)]
    for k, v in r.provenance.items():
        if isinstance(v, dict):
            prov_rows += [[html.escape(f"{k}: {kk}"), html.escape(str(vv))]
                          for kk, vv in v.items()]
    parts.append(_table(["item", "value"], prov_rows))
    return _page(r.title, "\n".join(parts))


def distribution_plot(values: dict[str, list[float]], flagged: list[bool],
                      titles: dict[str, str]) -> str:
    """One strip plot per named measure, flagged images in red; a base64 PNG."""
    fig, axes = plt.subplots(1, len(values), figsize=(3.2 * len(values), 3.2))
    axes = np.atleast_1d(axes)
    rng = np.random.default_rng(0)
    for ax, (name, vals) in zip(axes, values.items()):
        v = np.asarray(vals, dtype=float)
        x = 1 + rng.uniform(-0.08, 0.08, len(v))
        ax.boxplot(v[np.isfinite(v)], widths=0.4, showfliers=False)
        ax.scatter(x, v, c=["#c02a2a" if f else "#2a5a8a" for f in flagged], s=18, zorder=3)
        ax.set_title(titles.get(name, name), fontsize=9)
        ax.set_xticks([])
    fig.tight_layout()
    return _png(fig)


def render_group_report(rows: list[dict], plot: str, summary: str) -> str:
    """``rows``: one per image with 'name', 'report' (relative link), 'verdict', 'reasons',
    'flagged' and the measures to tabulate."""
    parts = ["<h1>eneuronet group report</h1>", f"<p>{html.escape(summary)}</p>",
             f'<img alt="distributions" src="data:image/png;base64,{plot}">',
             "<h2>Images</h2>"]
    table_rows, flags = [], []
    for r in rows:
        link = f'<a href="{html.escape(r["report"])}">{html.escape(r["name"])}</a>'
        table_rows.append([link, _verdict(r["verdict"]), f"{r['mean_confidence']:.3f}",
                           f"{r['total_brain_volume']:.0f}", f"{r['total_brain_z']:.2f}",
                           html.escape("; ".join(r["reasons"]))])
        flags.append(r["flagged"])
    parts.append(_table(["image", "verdict", "mean confidence", "total brain (mm³)",
                         "total brain z", "reasons"], table_rows, flags))
    return _page("eneuronet group report", "\n".join(parts))
