"""Keeps the backends' native start-up lines (TensorFlow's absl and oneDNN notices, its CPU-feature
banner) off the console.

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

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ (port|cpu_feature_guard|cuda_\w+|gpu_device|computation_placer|service)\.cc:\d+\]"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
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
    sys.stderr = os.fdopen(os.dup(console), "w", buffering=1, encoding=sys.stderr.encoding,
                           errors=sys.stderr.errors)
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pass_on, args=(read_end, console), daemon=True, name="native-stderr")
    reader.start()
    atexit.register(_drain, reader)
    _installed = True


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
