"""What reaches the console: the backends' native start-up lines (TensorFlow's absl and oneDNN notices,
its CPU-feature banner) are kept off it, and progress is a bar on a terminal, plain lines in a log.

They are written by C++ straight to file descriptor 2, before and after `TF_CPP_MIN_LOG_LEVEL` is
read, by this process and by every Dask worker it starts, so no Python logging setting reaches them.
`filter_native_stderr` points descriptor 2 at a pipe whose reader drops those lines and passes every
other byte on; Python's own `sys.stderr` (errors, progress bars, warnings) keeps writing to the
console directly. Worker processes inherit descriptor 2, so their lines go through the same filter.
"""
import atexit
import os
import re
import sys
import threading
import time

from cnncodes.features.outputs import utf8_name

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ (port|cpu_feature_guard|cuda_\w+|gpu_device|computation_placer|service)\.cc:\d+\]"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: "  # the TFLite converter's summary
    rb"|E\d{4} [\d:.]+ +\d+ cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register)")

_installed = False


def filter_native_stderr():
    """Installs the filter once per process (a no-op when descriptor 2 cannot be duplicated)."""
    global _installed
    if _installed:
        return
    try:
        console = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    if _writes_to_descriptor_2(sys.stderr):  # Python's own writes keep the console; a capture (tests) stays
        sys.stderr = os.fdopen(os.dup(console), "w", buffering=1, encoding=sys.stderr.encoding,
                               errors=sys.stderr.errors)
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pass_on, args=(read_end, console), daemon=True, name="native-stderr")
    reader.start()
    atexit.register(_drain, reader)
    _installed = True


def _writes_to_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


def _pass_on(read_end: int, console: int):
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
            if out:
                os.write(console, out)
    if pending and not NOISE.match(pending):
        os.write(console, pending)


def _drain(reader: threading.Thread):
    """At exit: close this process's end of the pipe so the reader sees the end and writes what is left."""
    try:
        os.dup2(sys.stderr.fileno(), 2)
    except (OSError, ValueError):
        return
    reader.join(timeout=2)


# -- progress ---------------------------------------------------------------------------------------------
def progress_bar(iterable=None, **options):
    """A tqdm bar when stderr is a terminal; in a log file (a pipe, a CI log) plain lines instead, since
    tqdm's \r redraws pile up there as one unreadable line."""
    from tqdm import tqdm

    return tqdm(iterable, **options) if sys.stderr.isatty() else LogProgress(iterable, **options)


class LogProgress:
    """tqdm's line, written whole at most every `every` seconds and once at the end; update, iteration and
    `with` work as tqdm's."""

    def __init__(self, iterable=None, *, total=None, initial=0, desc="", unit="it", disable=False, bar_format=None,
                 every=30.0, **_):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # as tqdm does
        self.iterable, self.total, self.n, self.initial = iterable, total, initial, initial
        self.desc, self.unit, self.bar_format, self.every = desc, unit, bar_format, every
        self.disable, self.closed, self.start = disable, False, time.monotonic()
        self.last = self.start

    def update(self, n=1):
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self):
        from tqdm import tqdm

        self.last = time.monotonic()
        if not self.disable:
            print(tqdm.format_meter(self.n, self.total, self.last - self.start, prefix=self.desc, unit=self.unit,
                                    bar_format=self.bar_format, initial=self.initial), file=sys.stderr, flush=True)

    def close(self):
        if not self.closed:  # one closing line, however often close is called
            self.closed = True
            self._line()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- text from data ---------------------------------------------------------------------------------------
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7f, 0xa0))}


def printable(text) -> str:
    """Text that came from data (class names, file names, run records) as the terminal should show it:
    control characters (ESC sequences that clear the screen or set the window title, BEL, CR, newlines)
    become visible escapes, so data can never act on the terminal or break a line in two; bytes of a file name
    that are not UTF-8 become escapes too (utf8_name), so printing one never fails."""
    return utf8_name(str(text)).translate(_CONTROL)
