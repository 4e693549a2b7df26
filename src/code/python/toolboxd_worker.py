"""toolboxd's stateful Python interpreter worker.

Jobs arrive as JSON lines on fd 3 ({"code", "envs"}); frames leave as JSON lines on fd 4:
{"type": "error", "name", "value", "traceback"}, {"type": "chart", "value"} (answered by a
newline on fd 3 before the job goes on) and last {"type": "control", "text": "completed" |
"interrupted"}. The user's own output goes to the real
stdout and stderr (fd 1 and 2), which toolboxd reads and turns into stdout/stderr frames, so
nothing the code prints can be mistaken for a frame. Globals persist from job to job.
"""

import json
import linecache
import os
import sys
import threading
import traceback

_jobs = os.fdopen(3, "rb")
_frames = os.fdopen(4, "wb", buffering=0)
os.set_inheritable(3, False)
os.set_inheritable(4, False)
sys.stdin = open(os.devnull)  # a job that reads stdin sees EOF, never the job stream
# Whole lines reach toolboxd as one chunk; partial lines are flushed before every frame.
sys.stdout.reconfigure(line_buffering=True, write_through=False)
sys.stderr.reconfigure(line_buffering=True, write_through=False)

_CELL = "<stdin>"
# The thread running a job (the only one that may read fd 3 while it runs), else None.
_job_thread = None


def _send(kind, **fields):
    frame = {"type": kind, "text": "", "name": "", "value": "", "traceback": ""}
    frame.update(fields)
    _frames.write((json.dumps(frame) + "\n").encode())


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _chart(chart):
    _flush()
    _frames.write((json.dumps({"type": "chart", "value": chart}) + "\n").encode())
    # toolboxd answers a chart with a newline once it has read the output printed before it;
    # waiting for it keeps what is printed next from overtaking the chart. (An interrupt while
    # waiting leaves the newline unread: the job loop skips blank lines.)
    if _job_thread == threading.get_ident():
        _jobs.read(1)


try:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import toolboxd_charts as _charts

    _charts.install(_chart)
except Exception:  # charts are a bonus; the interpreter works without them
    _charts = None


def _user_traceback(exc):
    """The traceback with only the frames of the user's code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == _CELL]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


_globals = {"__name__": "__main__", "__builtins__": __builtins__}


def _run(job):
    global _job_thread
    code = job.get("code", "")
    saved = {}
    for key, value in (job.get("envs") or {}).items():
        saved[key] = os.environ.get(key)
        os.environ[key] = str(value)
    status = "completed"
    _job_thread = threading.get_ident()
    try:
        linecache.cache[_CELL] = (len(code), None, code.splitlines(True), _CELL)
        exec(compile(code, _CELL, "exec"), _globals)
    except KeyboardInterrupt:
        status = "interrupted"
    except SystemExit:
        pass
    except BaseException as exc:  # noqa: BLE001 - every error is reported, none ends the worker
        _flush()
        _send(
            "error",
            name=type(exc).__name__,
            value=str(exc),
            traceback=_user_traceback(exc),
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if _charts is not None and status == "completed":
        try:
            _charts.flush(_chart)  # figures left open, as a notebook shows them
            pyplot = sys.modules.get("matplotlib.pyplot")
            if pyplot is not None:
                pyplot.close("all")  # shown once, like a notebook cell: no pile-up across jobs
        except Exception:
            pass
    _job_thread = None
    _flush()
    _send("control", text=status)


def _main():
    global _job_thread
    while True:
        try:
            line = _jobs.readline()
            if not line:
                return
            if not line.strip():
                continue  # a chart's acknowledgement that arrived after an interrupt
            job = json.loads(line)
        except KeyboardInterrupt:
            continue  # an interrupt between jobs interrupts nothing
        except ValueError:
            _send("error", name="ProtocolError", value="malformed job")
            _send("control", text="completed")
            continue
        try:
            _run(job)
        except KeyboardInterrupt:
            _job_thread = None
            _flush()
            _send("control", text="interrupted")


_main()
