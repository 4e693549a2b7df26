# toolboxd: runs a code-run program that cannot plot, as plain Python, as `__main__`.
#
#   python3 -u -c "import sys;sys.dont_write_bytecode=0;sys.path.insert(0,sys.argv[1]);import toolboxd_plain" DIR FILE ARGS...
#
# Imported (not run as a script) so that Python keeps this file's bytecode in DIR/__pycache__ and
# does not parse it again on every run; the program itself goes to `exec` as bytes (its coding
# declaration is honoured), not through `compile()`, whose first call in a process builds every
# AST type (about 10 million instructions, a quarter of Python's own start). Its frames are
# therefore named "<string>"; linecache gets its lines under that name once something imports
# linecache (a traceback, `logging.exception`, `inspect.getsource`, a warning), so they show
# the program's source as a file's would. stdout and stderr write whole lines.
import sys
import __main__

sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)
sys.path.remove(sys.argv[1])
del sys.argv[:2]
_file = sys.argv[0]
for _stream in (sys.stdout, sys.stderr):
    _stream.reconfigure(line_buffering=True, write_through=False)
with open(_file, "rb") as _source:
    _code = _source.read()


def _lines(linecache):
    text = _code.decode(errors="replace")
    linecache.cache["<string>"] = (len(text), None, text.splitlines(True), "<string>")


class _WithLines:
    """linecache's own loader, and the program's lines put in once linecache ran."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _lines(module)


class _Linecache:
    """Finds linecache as the other finders do, with `_WithLines` as its loader; used once."""

    def find_spec(name, path=None, target=None):
        if name != "linecache":
            return None
        sys.meta_path.remove(_Linecache)
        spec = next(filter(None, (f.find_spec(name, path, target) for f in sys.meta_path)))
        spec.loader = _WithLines(spec.loader)
        return spec


if "linecache" in sys.modules:
    _lines(sys.modules["linecache"])
else:
    sys.meta_path.insert(0, _Linecache)
__main__.__file__ = _file
# What the bootstrap imported into `__main__` is not the program's.
vars(__main__).pop("sys", None)
try:
    exec(_code, __main__.__dict__)
except SystemExit:
    raise
except KeyboardInterrupt:
    sys.exit(130)
except BaseException as e:
    import traceback

    # The first frame is this module's; the program's own follow.
    traceback.print_exception(type(e), e, e.__traceback__.tb_next)
    sys.exit(1)
