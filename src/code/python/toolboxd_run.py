"""toolboxd code_run bootstrap (Python).

    python3 -u toolboxd_run.py <code-file> [argv...]

Runs <code-file> as ``__main__`` with ``sys.argv = [<code-file>, *argv]``.
If the environment variable TOOLBOXD_CHART_FD names an inherited, writable
file descriptor, matplotlib figures shown (or left open at exit) are written
to it, one JSON line each:

    {"type":"chart","value":{...chart...}}\n

The descriptor is moved to a private close-on-exec copy and the variable is
removed before the user's code runs, so child processes never see it, and
nothing the user prints on stdout/stderr can become a chart.

Exit status: the user's SystemExit code, 1 after an uncaught exception
(traceback restricted to the user's frames), 130 after KeyboardInterrupt.
"""

import os
import sys


def _take_chart_fd():
    """Move the chart fd to a private non-inheritable descriptor and hide it
    from the environment. Returns None if charts are off or the fd is bad."""
    raw = os.environ.pop("TOOLBOXD_CHART_FD", None)  # also unsetenv()s it
    if raw is None:
        return None
    try:
        fd = int(raw)
        if fd <= 2:  # never take over stdin/stdout/stderr
            return None
        private = os.dup(fd)  # os.dup() results are non-inheritable (PEP 446)
    except (ValueError, OSError):
        return None
    try:
        os.close(fd)
    except OSError:
        pass
    return private


# Do this before anything else runs.
_CHART_FD = _take_chart_fd()

import builtins  # noqa: E402  (after the fd is secured, on purpose)
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_charts_module():
    """Load toolboxd_charts.py from next to this file, by path (works even
    with PYTHONSAFEPATH/-P, and does not register it in sys.modules)."""
    path = os.path.join(_HERE, "toolboxd_charts.py")
    spec = importlib.util.spec_from_file_location("toolboxd_charts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_emit(fd):
    def emit(chart):
        line = json.dumps({"type": "chart", "value": chart},
                          separators=(",", ":"), allow_nan=False) + "\n"
        view = memoryview(line.encode("ascii"))  # json.dumps escapes non-ASCII
        while view:
            view = view[os.write(fd, view):]
    return emit


def _strip_frames(exc, ours, seen=None):
    """Unlink our own frames from exc's traceback (and its chained
    exceptions), leaving only the user's frames."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    kept = []
    tb = exc.__traceback__
    while tb is not None:
        if not any(tb.tb_frame.f_globals is g for g in ours):
            kept.append(tb)
        tb = tb.tb_next
    for a, b in zip(kept, kept[1:]):
        a.tb_next = b  # writable since Python 3.7
    if kept:
        kept[-1].tb_next = None
    exc.__traceback__ = kept[0] if kept else None
    _strip_frames(exc.__cause__, ours, seen)
    _strip_frames(exc.__context__, ours, seen)
    for sub in getattr(exc, "exceptions", None) or ():  # ExceptionGroup
        if isinstance(sub, BaseException):
            _strip_frames(sub, ours, seen)


def _report(exc, ours):
    """Print an uncaught exception the way Python would, user frames only
    (through the user's sys.excepthook if they installed one)."""
    try:
        _strip_frames(exc, ours)
    except Exception:
        pass
    hook = sys.excepthook
    if hook is not sys.__excepthook__:
        try:
            hook(type(exc), exc, exc.__traceback__)
            return
        except Exception:
            pass
    try:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except Exception:
        pass


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: toolboxd_run.py <code-file> [argv...]\n")
        return 2
    path, user_argv = sys.argv[1], sys.argv[2:]
    # Whole lines per write (toolboxd reads stdout and stderr from two pipes; `-u` alone would
    # write a print's text and its newline apart, so lines of the two streams could interleave).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=False)
        except (AttributeError, ValueError):
            pass

    ours = [globals()]
    flush = None
    if _CHART_FD is not None:
        charts = _load_charts_module()
        ours.append(vars(charts))
        emit = _make_emit(_CHART_FD)
        # flush_at_exit: figures finished by non-daemon threads after the
        # code returns are emitted at interpreter exit (de-duplicated).
        charts.install(emit, flush_at_exit=True)
        pid = os.getpid()

        def flush():
            if os.getpid() == pid:  # never from a fork()ed child
                charts.flush(emit)

    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as err:
        sys.stderr.write("python3: can't open file %r: [Errno %s] %s\n"
                         % (path, err.errno, err.strerror))
        return 2

    # Look like `python3 <code-file>` / `python3 -`: our directory must not be
    # on the path; imports resolve against the working directory as with the
    # reference daemon's `python3 -u -`.
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == os.path.realpath(_HERE):
        sys.path[0] = ""
    sys.argv = [path] + user_argv

    main_module = types.ModuleType("__main__")
    main_module.__file__ = path
    main_module.__builtins__ = builtins
    main_module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main_module.__spec__ = None
    main_module.__package__ = None
    main_module.__cached__ = None
    bootstrap = sys.modules.get(__name__)  # noqa: F841  keep our module alive
    sys.modules["__main__"] = main_module  # stays: pickle, atexit, threads need it

    try:
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main_module.__dict__)
    except SystemExit:
        if flush is not None:
            flush()
        raise  # Python's own handling: exit code, or message on stderr + 1
    except BaseException as exc:
        if flush is not None:
            flush()
        _report(exc, ours)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    if flush is not None:
        flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
