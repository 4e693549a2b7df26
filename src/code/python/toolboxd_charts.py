"""Chart capture for toolboxd's ``code_run`` (Python).

Turns matplotlib figures into the chart dictionaries that Daytona clients
expect (``daytona.common.charts``), and hooks ``matplotlib.pyplot.show`` so
that every shown figure is handed to a callback.

Importing this module has no side effects and needs only the standard
library; matplotlib (and numpy, which it depends on) are imported only once a
figure is analysed. Pillow is optional and only used to shrink the PNG.

Public API:
    figure_to_chart(fig) -> dict | None   chart for one figure (None only if
                                          not even a PNG could be rendered)
    install(emit, flush_at_exit=False)    call emit(chart) for each figure
                                          shown through pyplot.show(); with
                                          flush_at_exit, also flush() when
                                          the interpreter exits
    flush(emit)                           emit the figures still open that
                                          were never shown (program end)

Output rules (the SDK models are strict pydantic): numbers are plain floats
and never NaN/Infinity, bar ``value`` is a string, ``points``/``outliers``/
ticks hold numbers only, and a missing value (text a chart lacks, a number
that is not finite) is left out, as Daytona does (every field of the SDK
types is optional, none is nullable).
"""

import atexit
import base64
import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import weakref

__all__ = ["figure_to_chart", "install", "flush"]


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _num(value):
    """A finite Python float, or None (NaN, Infinity, masked, not a number)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text(value):
    """Non-empty text, or None. Matplotlib's private labels ("_child0",
    "_nolegend_", "_container1", ...) start with an underscore: treat them as
    absent."""
    if value is None:
        return None
    value = str(value)
    if not value or value.startswith("_"):
        return None
    return value


_MATHDEFAULT = re.compile(r"^\$\\mathdefault\{(.*)\}\$$")


def _tick_text(value):
    """Tick label as a plain string: unwrap "$\\mathdefault{10^{2}}$" and use
    an ASCII minus instead of matplotlib's U+2212."""
    value = str(value)
    match = _MATHDEFAULT.match(value)
    if match:
        value = match.group(1)
    return value.replace("\u2212", "-")


def _value_text(value):
    """Bar value as a string (the SDK types ChartElement.value as str):
    "3" for integral values, else the shortest float repr ("2.5")."""
    number = _num(value)
    if number is None:
        return None
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _contains(seq, item):
    """Identity membership (artists compare by identity anyway; this avoids
    relying on ArtistList semantics across matplotlib versions)."""
    return any(x is item for x in seq)


# --------------------------------------------------------------------------
# Axis description: kind (datetime / categorical / scale), value conversion,
# ticks and tick labels
# --------------------------------------------------------------------------

def _axis_kind(axis):
    """"datetime", "categorical" or the axis scale name ("linear", "log", ...)."""
    from matplotlib import category, dates

    if isinstance(getattr(axis, "units", None), category.UnitData):
        return "categorical"
    date_formatters = (dates.DateFormatter, dates.AutoDateFormatter,
                       dates.ConciseDateFormatter)
    if isinstance(axis.get_major_locator(), dates.DateLocator) or isinstance(
            axis.get_major_formatter(), date_formatters):
        return "datetime"
    return axis.get_scale()


def _converter(kind):
    """Function mapping matplotlib data values (a number or a numpy array) to
    the numbers we emit, as float(s), NaN where not representable. Dates are
    matplotlib date numbers (days since the configurable ``date.epoch``): emit
    Unix epoch seconds instead."""
    import numpy as np

    scale, offset = 1.0, 0.0
    if kind == "datetime":
        from matplotlib import dates

        scale, offset = 86400.0, dates.num2date(0).timestamp()

    def convert(values):
        try:
            return np.asarray(values, dtype=float) * scale + offset
        except (TypeError, ValueError):
            return float("nan")

    return convert


def _ticks(axis, convert):
    """(tick positions, tick labels) of the major ticks inside the view."""
    locs = [float(v) for v in axis.get_majorticklocs()]
    try:
        # Format all locations at once: FixedFormatter labels are positional.
        labels = list(axis.get_major_formatter().format_ticks(locs))
    except Exception:
        labels = [""] * len(locs)
    if len(labels) != len(locs):
        labels = [""] * len(locs)
    low, high = sorted(float(v) for v in axis.get_view_interval())
    slack = 1e-9 * max(1.0, abs(high - low))
    ticks, texts = [], []
    for loc, label in zip(locs, labels):
        number = _num(convert(loc))
        if number is None or not (low - slack <= loc <= high + slack):
            continue
        ticks.append(number)
        texts.append(_tick_text(label))
    return ticks, texts


def _tick_namer(axis, kind):
    """Function giving the name of a position on the axis: the label of the
    major tick there (a category, a date, ...), else the number itself.

    When ticks carry names rather than numbers (categories, or
    set_xticks(positions, labels), as for grouped bars and box plots) a
    position takes the nearest tick within half a tick spacing, so grouped
    bars offset around their tick get the group's name."""
    from matplotlib.ticker import FixedLocator

    locs = [float(v) for v in axis.get_majorticklocs()]
    try:
        labels = [_tick_text(t) for t in axis.get_major_formatter().format_ticks(locs)]
    except Exception:
        labels = []
    ticks = [(loc, label) for loc, label in zip(locs, labels) if label]
    snap = kind == "categorical" or (isinstance(axis.get_major_locator(), FixedLocator)
                                     and not all(_is_number(label) for _, label in ticks))
    ordered = sorted(loc for loc, _ in ticks)
    gaps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
    reach = min(gaps) / 2.0 if gaps else float("inf")

    def name(position):
        if ticks:
            loc, label = min(ticks, key=lambda t: abs(t[0] - position))
            if _close(loc, position) or (snap and abs(loc - position) < reach):
                return label
        return _value_text(position)

    return name


def _points(xy, convert_x, convert_y):
    """[[x, y], ...] as Python floats, every non-finite point dropped."""
    import numpy as np

    xs, ys = convert_x(xy[:, 0]), convert_y(xy[:, 1])
    keep = np.isfinite(xs) & np.isfinite(ys)
    return np.column_stack([xs[keep], ys[keep]]).tolist()


def _as_xy(data):
    """An (N, 2) float array from artist data (masked entries become NaN)."""
    import numpy as np

    arr = np.ma.filled(np.ma.asarray(data, dtype=float), np.nan)
    return arr.reshape(-1, 2) if arr.size else np.empty((0, 2))


# --------------------------------------------------------------------------
# Per-axes analysis
# --------------------------------------------------------------------------

def _axes_title(ax):
    for loc in ("center", "left", "right"):
        title = _text(ax.get_title(loc=loc))
        if title:
            return title
    return None


def _boxes(ax):
    """Box statistics recorded by our Axes.bxp wrapper, for the boxes still
    on this axes: [(stats, median_line), ...]."""
    return [(stats, median) for stats, median in getattr(ax, "_toolboxd_boxes", [])
            if _contains(ax.lines, median)]


def _is_axis_line(xy):
    """Grid/axhline/axvline-like: exactly two points, horizontal or vertical."""
    if len(xy) != 2:
        return False
    (x0, y0), (x1, y1) = xy
    return x0 == x1 or y0 == y1


def _data_lines(ax):
    """[(line, xy, label)] for the Line2D artists that carry data: not
    errorbar caps, not 2-point horizontal/vertical helper lines, not empty,
    not hidden. An errorbar's data line is named after its container."""
    from matplotlib.container import ErrorbarContainer

    caps, names = [], {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            data_line, cap_lines = container.lines[0], container.lines[1]
            caps.extend(cap_lines or ())
            if data_line is not None:
                names[id(data_line)] = container.get_label()
    lines = []
    for line in ax.lines:
        if not line.get_visible() or _contains(caps, line):
            continue
        xy = _as_xy(line.get_xydata())
        if len(xy) == 0 or _is_axis_line(xy):
            continue
        lines.append((line, xy, names.get(id(line), line.get_label())))
    return lines


def _scatter_collections(ax):
    """[(collection, offsets, label)] for scatter plots."""
    from matplotlib.collections import PathCollection

    out = []
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            xy = _as_xy(coll.get_offsets())
            if len(xy):
                out.append((coll, xy, coll.get_label()))
    return out


def _bar_elements(ax, containers):
    import numpy as np

    x_name = _tick_namer(ax.xaxis, _axis_kind(ax.xaxis))
    y_name = _tick_namer(ax.yaxis, _axis_kind(ax.yaxis))
    elements = []
    for container in containers:
        group = _text(container.get_label())
        horizontal = getattr(container, "orientation", None) == "horizontal"
        values = getattr(container, "datavalues", None)  # matplotlib >= 3.4
        if values is None or len(values) != len(container.patches):
            values = [p.get_width() if horizontal else p.get_height()
                      for p in container.patches]
        for patch, value in zip(container.patches, values):
            if horizontal:  # barh: the category is on the y axis
                label = y_name(patch.get_y() + patch.get_height() / 2.0)
            else:
                label = x_name(patch.get_x() + patch.get_width() / 2.0)
            if isinstance(value, (np.datetime64, np.timedelta64)):
                value = None  # not a plain number: reported as null
            elements.append({"label": label, "group": group, "value": _value_text(value)})
    return elements


def _autopct(wedge):
    """The autopct text of a wedge, via the tag left by our Axes.pie wrapper.
    pie() returns (wedges, texts[, autotexts]); matplotlib >= 3.11 returns a
    PieContainer that indexes the same way (and may gain texts later through
    Axes.pie_label), so the lookup is done now, not when pie() returned."""
    tag = getattr(wedge, "_toolboxd_pie", None)
    if tag is None:
        return None
    result, index = tag
    try:
        text = result[2][index]
    except (IndexError, KeyError, TypeError):
        return None
    if text.axes is not wedge.axes:  # removed since
        return None
    return text.get_text() or None


def _pie_elements(wedges):
    return [{"label": _text(wedge.get_label()),
             "angle": _num(abs(wedge.theta2 - wedge.theta1)),
             "radius": _num(wedge.r),
             "autopct": _autopct(wedge)} for wedge in wedges]


def _box_elements(ax, boxes, convert):
    import numpy as np

    x_name = _tick_namer(ax.xaxis, _axis_kind(ax.xaxis))
    y_name = _tick_namer(ax.yaxis, _axis_kind(ax.yaxis))
    elements = []
    for index, (stats, median) in enumerate(boxes):
        label = _text(stats.get("label"))
        if label is None:
            # Orientation from the median line: horizontal segment => the boxes
            # stand on the x axis.
            xs, ys = median.get_xdata(), median.get_ydata()
            if len(ys) == 2 and ys[0] == ys[1]:
                label = x_name((float(xs[0]) + float(xs[1])) / 2.0)
            elif len(xs) == 2:
                label = y_name((float(ys[0]) + float(ys[1])) / 2.0)
            else:
                label = str(index + 1)
        # Keys of matplotlib.cbook.boxplot_stats(); whislo/whishi are the
        # whisker ends (the extreme data points within 1.5 IQR by default).
        value = {key: _num(convert(stats.get(key))) for key in ("whislo", "q1", "med", "q3", "whishi")}
        outliers = [_num(v) for v in np.ravel(convert(stats.get("fliers", [])))]
        elements.append({
            "label": label,
            "min": value["whislo"],
            "first_quartile": value["q1"],
            "median": value["med"],
            "third_quartile": value["q3"],
            "max": value["whishi"],
            "outliers": [v for v in outliers if v is not None],
        })
    return elements


def _axes_chart(ax):
    """Chart dict (without png) for one axes."""
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    chart = {"type": "unknown", "title": _axes_title(ax), "elements": []}
    boxes = _boxes(ax)
    wedges = [p for p in ax.patches if isinstance(p, Wedge) and p.get_visible()]
    bars = [c for c in ax.containers if isinstance(c, BarContainer) and len(c.patches)]

    if ax.images and not boxes:
        return chart  # images (imshow, ...) are not representable
    if getattr(ax, "name", "") == "3d":
        return chart  # 3D artists hold projected 2D coordinates, not the data
    if wedges and not boxes and not bars:
        chart.update(type="pie", elements=_pie_elements(wedges))
        return chart

    x_kind, y_kind = _axis_kind(ax.xaxis), _axis_kind(ax.yaxis)
    to_x, to_y = _converter(x_kind), _converter(y_kind)
    if boxes:
        # The data axis is the one opposite to the box positions.
        stands_on_x = all(len(m.get_ydata()) == 2 and m.get_ydata()[0] == m.get_ydata()[1]
                          for _, m in boxes)
        chart.update(type="box_and_whisker",
                     elements=_box_elements(ax, boxes, to_y if stands_on_x else to_x))
    elif bars:
        chart.update(type="bar", elements=_bar_elements(ax, bars))
    else:
        lines, scatters = _data_lines(ax), _scatter_collections(ax)
        if not lines and not scatters:
            return chart
        elements = [{"label": _text(label), "points": _points(xy, to_x, to_y)}
                    for _, xy, label in lines + scatters]
        # plot(x, y, "o") draws markers only: that is a scatter plot too.
        markers_only = all(str(line.get_linestyle()) in ("None", "none", "", " ")
                           for line, _, _ in lines)
        chart.update(type="scatter" if markers_only else "line", elements=elements)

    x_ticks, x_tick_labels = _ticks(ax.xaxis, to_x)
    y_ticks, y_tick_labels = _ticks(ax.yaxis, to_y)
    chart.update(x_label=_text(ax.get_xlabel()), y_label=_text(ax.get_ylabel()),
                 x_ticks=x_ticks, x_tick_labels=x_tick_labels, x_scale=x_kind,
                 y_ticks=y_ticks, y_tick_labels=y_tick_labels, y_scale=y_kind)
    return chart


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def _all_axes(fig):
    axes = list(fig.axes)
    for sub in getattr(fig, "subfigs", None) or ():
        axes.extend(_all_axes(sub))
    return axes


def _content_axes(fig):
    """Axes worth reporting: visible, holding data, not colorbars."""
    out = []
    for ax in _all_axes(fig):
        if not ax.get_visible() or not ax.has_data():
            continue
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        out.append(ax)
    return out


def _suptitle(fig):
    getter = getattr(fig, "get_suptitle", None)  # matplotlib >= 3.8
    if getter is not None:
        return _text(getter())
    sup = getattr(fig, "_suptitle", None)
    return _text(sup.get_text()) if sup is not None else None


def _render_png(fig):
    """PNG bytes of the whole figure (cropped to its content when possible:
    a stray artist far outside the axes can make the tight box unusable)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    except Exception:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _optimise_png(raw):
    """Losslessly recompress with Pillow when it is installed and helps."""
    try:
        from PIL import Image
    except Exception:
        return raw
    try:
        out = io.BytesIO()
        Image.open(io.BytesIO(raw)).save(out, format="PNG", optimize=True)
        data = out.getvalue()
        return data if 0 < len(data) < len(raw) else raw
    except Exception:
        return raw


def _describe(fig):
    """Chart dict (without png) for a whole figure."""
    axes = _content_axes(fig)
    if not axes:
        return {"type": "unknown", "title": _suptitle(fig), "elements": []}
    if len(axes) == 1:
        chart = _axes_chart(axes[0])
        chart["title"] = chart.get("title") or _suptitle(fig)
        return chart
    return {"type": "composite_chart", "title": _suptitle(fig),
            "elements": [_axes_chart(ax) for ax in axes]}


def _omit_missing(chart):
    """The chart without its keys whose value is None, in its elements (and
    their elements) too."""
    out = {key: value for key, value in chart.items() if value is not None}
    if isinstance(out.get("elements"), list):
        out["elements"] = [_omit_missing(e) if isinstance(e, dict) else e
                           for e in out["elements"]]
    return out


def _chart_with_png(fig, raw_png):
    png = base64.b64encode(_optimise_png(raw_png)).decode("ascii")
    try:
        chart = _describe(fig)
        json.dumps(chart, allow_nan=False)  # guarantee: serialisable, no NaN
    except Exception:
        try:
            title = _suptitle(fig)
            if title is None and len(fig.axes) == 1:
                title = _axes_title(fig.axes[0])
        except Exception:
            title = None
        chart = {"type": "unknown", "title": title, "elements": []}
    chart["png"] = png
    return _omit_missing(chart)


def figure_to_chart(fig):
    """The chart dict for one matplotlib figure; None if it cannot even be
    rendered to PNG. Never raises for a broken figure."""
    try:
        raw = _render_png(fig)
    except Exception:
        return None
    return _chart_with_png(fig, raw)


# --------------------------------------------------------------------------
# Capture: pyplot.show hook, de-duplication, flush
# --------------------------------------------------------------------------

_lock = threading.RLock()
_emit = None                         # callback given to install()
_seen = weakref.WeakKeyDictionary()  # figure -> digest of the PNG last emitted
_exit_pid = None                     # flush at exit in this process only (not forks)
_atexit_registered = False


def _open_figures():
    """Figures pyplot still manages, in figure-number order (no side effect
    on the current figure). Empty if pyplot was never imported."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    from matplotlib._pylab_helpers import Gcf

    managers = sorted(Gcf.figs.items(), key=lambda item: item[0])
    return [manager.canvas.figure for _, manager in managers]


def _emit_figures(figures, emit):
    """Emit each figure once per distinct content; swallow every error."""
    if emit is None:
        return
    with _lock:
        for fig in figures:
            try:
                raw = _render_png(fig)
            except Exception:
                continue  # not even a PNG: skip this figure
            digest = hashlib.sha256(raw).hexdigest()
            try:
                if _seen.get(fig) == digest:
                    continue
                _seen[fig] = digest
            except TypeError:
                pass  # not weak-referenceable: no de-duplication
            try:
                emit(_chart_with_png(fig, raw))
            except Exception:
                pass  # a broken channel must not break the user's program


def flush(emit):
    """Emit every figure still open that has not been emitted already."""
    try:
        _emit_figures(_open_figures(), emit)
    except Exception:
        pass


def _patched_show(pyplot, original):
    def show(*args, **kwargs):
        try:
            figures = _open_figures()
        except Exception:
            figures = []
        _emit_figures(figures, _emit)
        try:
            return original(*args, **kwargs)
        finally:
            for fig in figures:
                try:
                    pyplot.close(fig)
                except Exception:
                    pass

    show._toolboxd_original = original
    show.__doc__ = getattr(original, "__doc__", None)
    show.__name__ = getattr(original, "__name__", "show")
    show.__qualname__ = getattr(original, "__qualname__", "show")
    show.__module__ = getattr(original, "__module__", "matplotlib.pyplot")
    show.__wrapped__ = original
    return show


def _patch_axes(axes_cls):
    """Record what Axes.bxp and Axes.pie know but their artists do not: the
    box statistics, and which autopct text belongs to which wedge."""
    import functools

    bxp = axes_cls.bxp
    if not getattr(bxp, "_toolboxd", False):
        @functools.wraps(bxp)
        def bxp_wrapper(self, bxpstats, *args, **kwargs):
            result = bxp(self, bxpstats, *args, **kwargs)
            try:
                records = self.__dict__.setdefault("_toolboxd_boxes", [])
                for stats, median in zip(bxpstats, result.get("medians", [])):
                    records.append((dict(stats), median))
            except Exception:
                pass
            return result
        bxp_wrapper._toolboxd = True
        axes_cls.bxp = bxp_wrapper

    pie = axes_cls.pie
    if not getattr(pie, "_toolboxd", False):
        @functools.wraps(pie)
        def pie_wrapper(self, *args, **kwargs):
            result = pie(self, *args, **kwargs)
            try:
                for index, wedge in enumerate(result[0]):
                    wedge._toolboxd_pie = (result, index)
            except Exception:
                pass
            return result
        pie_wrapper._toolboxd = True
        axes_cls.pie = pie_wrapper


def _at_exit():
    if _exit_pid is not None and _exit_pid == os.getpid():
        flush(_emit)


def _after_pyplot(pyplot):
    """Runs right after matplotlib.pyplot is executed (or at install time if
    it already was)."""
    global _atexit_registered
    if not getattr(pyplot.show, "_toolboxd_original", None):
        pyplot.show = _patched_show(pyplot, pyplot.show)
    if not _atexit_registered:
        # pyplot's import registered Gcf.destroy_all with atexit; handlers run
        # last-in first-out, so ours, registered now, sees the figures still
        # open (after non-daemon threads have finished, too).
        atexit.register(_at_exit)
        _atexit_registered = True
    try:
        import matplotlib.axes
        _patch_axes(matplotlib.axes.Axes)
    except Exception:
        pass


def _after_matplotlib(matplotlib):
    """Select Agg before pyplot picks a backend. This only sets rcParams, so
    a later matplotlib.use()/switch_backend() by the user still wins."""
    try:
        matplotlib.use("Agg")
    except Exception:
        pass


_HOOKS = {"matplotlib": _after_matplotlib, "matplotlib.pyplot": _after_pyplot}


class _PatchingLoader:
    """Delegates to the real loader, then runs a hook on the fresh module."""

    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        module.__loader__ = self._loader  # introspection sees the real loader
        try:
            self._loader.exec_module(module)
        finally:
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self._loader
        try:
            self._hook(module)
        except Exception:
            pass

    def __getattr__(self, name):  # get_source, get_resource_reader, ...
        if name in ("_loader", "_hook"):  # half-built copy: no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)


class _Finder:
    """sys.meta_path entry: finds matplotlib / matplotlib.pyplot through the
    other finders and wraps their loader with _PatchingLoader."""

    def find_spec(self, fullname, path=None, target=None):
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        for finder in list(sys.meta_path):
            if isinstance(finder, _Finder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, hook)
        return spec

    def invalidate_caches(self):
        pass


def install(emit, flush_at_exit=False):
    """Hand every figure shown through matplotlib.pyplot.show() to emit(chart)
    (once per distinct content), then close it. Works whether pyplot is
    imported before or after this call. With flush_at_exit, figures still
    open when the interpreter exits are emitted too (see flush())."""
    global _emit, _exit_pid
    _emit = emit
    _exit_pid = os.getpid() if flush_at_exit else None
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        try:
            if not pyplot.get_fignums():
                pyplot.switch_backend("Agg")
        except Exception:
            pass
        _after_pyplot(pyplot)
    elif "matplotlib" in sys.modules:
        _after_matplotlib(sys.modules["matplotlib"])
