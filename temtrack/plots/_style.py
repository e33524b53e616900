"""One look for every temtrack figure: sizes, fonts, line widths (matplotlib object API only).

Every figure function is wrapped by :func:`styled`, which creates its artists inside
``matplotlib.rc_context(STYLE)`` and then pins the tick-label size on each axes, because ticks made
later at save time would otherwise take the global rcParams. Axis labels carry their unit in
parentheses, ``"time (s)"``; the tests check every labelled axis for one.
"""
from __future__ import annotations

import functools

#: rcParams for every figure: compact fonts readable at column width, thin lines.
STYLE = {
    "font.size": 9.0,
    "axes.labelsize": 9.0,
    "axes.titlesize": 9.5,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.0,
    "axes.linewidth": 0.8,
    "image.interpolation": "nearest",
}
#: Figure sizes (inches): a line plot, an image with a colour bar, a stacked panel figure.
LINE_SIZE = (6.4, 4.0)
IMAGE_SIZE = (6.4, 5.0)


def new_figure(size=LINE_SIZE, *, rows: int = 1, sharex: bool = False):
    """A constrained-layout :class:`matplotlib.figure.Figure` and its axes (one, or ``rows`` stacked)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, layout="constrained")
    if rows == 1:
        return fig, fig.add_subplot()
    axes = fig.subplots(rows, 1, sharex=sharex)
    return fig, list(axes)


def styled(func):
    """Build the figure inside the temtrack style (see the module docstring)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib
        with matplotlib.rc_context(STYLE):
            fig = func(*args, **kwargs)
        for ax in fig.axes:
            ax.tick_params(labelsize=STYLE["xtick.labelsize"])
        return fig
    return wrapper


def si_scale(values, unit: str):
    """A prefix that makes ``max |values|`` read between 1 and 1000: ``(factor, 'uA')`` for amps."""
    import numpy as np
    v = np.asarray(values, float)
    v = np.abs(v[np.isfinite(v)])
    top = float(v.max()) if v.size else 0.0
    for factor, prefix in ((1.0, ""), (1e3, "m"), (1e6, "µ"), (1e9, "n"), (1e12, "p")):
        if top == 0.0 or top * factor >= 1.0:
            return factor, prefix + unit
    return 1e15, "f" + unit
