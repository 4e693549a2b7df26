"""toolboxd's stateful Python interpreter worker.

Jobs arrive as JSON lines on fd 3 ({"code", "envs"}); frames leave as JSON lines on fd 4:
{"type": "error", "name", "value", "traceback"}, {"type": "chart", "value"} (answered by a
newline on fd 3 before the job goes on) and last {"type": "control", "text": "completed" |
"interrupted"}. The user's own output goes to the real
stdout and stderr (fd 1 and 2), which toolboxd reads and turns into stdout/stderr frames, so
nothing the code prints can be mistaken for a frame. Globals persist from job to job.

Only the process toolboxd started serves jobs. A process the code forks (`os.fork()`,
multiprocessing's fork) gets /dev/null in place of fds 3 and 4 at once, so it can neither take a
job nor write a frame, and when the job's code returns in it, it exits (with the code's status, a
traceback on its stderr) instead of going back to the job loop.

Code that closes or replaces fd 1 or 2 gets them back before the next job: the worker keeps
duplicates of the pipes toolboxd reads and puts them back in place around every job.
"""

import fcntl
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
_PID = os.getpid()


def _forked():
    """True in a process the job's code forked from the worker."""
    return os.getpid() != _PID


def _after_fork_in_child():
    # The child must never read a job or write a frame: both protocol fds become /dev/null
    # (close-on-exec, as before), so the file objects above stay valid and see EOF or discard.
    try:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        for fd in (3, 4):
            os.dup2(null, fd, inheritable=False)
        os.close(null)
    except OSError:
        for fd in (3, 4):
            try:
                os.close(fd)
            except OSError:
                pass


os.register_at_fork(after_in_child=_after_fork_in_child)


def _keep(fd):
    """A close-on-exec duplicate of `fd`, numbered high, out of the way of the code's own fds."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 512)
    except (OSError, AttributeError):
        return os.dup(fd)


# The pipes toolboxd reads, kept to put back if the code closes or replaces fd 1 or 2.
_STDIO = [(fd, _keep(fd)) for fd in (1, 2)]


def _restore_stdio():
    for fd, kept in _STDIO:
        try:
            want = os.fstat(kept)
        except OSError:
            continue  # the duplicate itself is gone: toolboxd notices and restarts the worker
        try:
            have = os.fstat(fd)
            if (have.st_dev, have.st_ino) == (want.st_dev, want.st_ino):
                continue
        except OSError:
            pass
        try:
            os.dup2(kept, fd)
        except OSError:
            pass
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if getattr(stream, "closed", False):
            fresh = open(fd, "w", buffering=1, closefd=False, errors="backslashreplace")
            setattr(sys, name, fresh)


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


def _exit_forked(status, exc=None):
    """Ends a process the job's code forked, as the end of a script would: never a frame."""
    if exc is not None:
        try:
            sys.stderr.write(_user_traceback(exc))
        except Exception:
            pass
    _flush()
    sys.exit(status)


def _exit_status(exc):
    """The status `SystemExit(code)` ends a process with (its message goes to stderr)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    try:
        print(exc.code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _run(job):
    global _job_thread
    code = job.get("code", "")
    _restore_stdio()
    saved = {}
    for key, value in (job.get("envs") or {}).items():
        saved[key] = os.environ.get(key)
        os.environ[key] = str(value)
    status = "completed"
    _job_thread = threading.get_ident()
    try:
        linecache.cache[_CELL] = (len(code), None, code.splitlines(True), _CELL)
        exec(compile(code, _CELL, "exec"), _globals)
    except KeyboardInterrupt as exc:
        if _forked():
            _exit_forked(130, exc)
        status = "interrupted"
    except SystemExit as exc:
        if _forked():
            _exit_forked(_exit_status(exc))
    except BaseException as exc:  # noqa: BLE001 - every error is reported, none ends the worker
        if _forked():
            _exit_forked(1, exc)
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
    if _forked():
        _exit_forked(0)
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
    _restore_stdio()
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
            if _forked():
                _exit_forked(130)
            _job_thread = None
            _restore_stdio()
            _flush()
            _send("control", text="interrupted")


_main()
