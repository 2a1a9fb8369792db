"""The conditions every benchmark prints with its numbers: a figure never travels without them."""
import os
import platform
import sys
import time


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def vector_units() -> str:
    """The widest vector instructions the CPU offers: "AMD EPYC" names machines from AVX2-only to AVX-512 with
    bf16, and speeds (and whether --precision bf16 pays) follow these, not the name."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    except OSError:
        return "unknown vector units"
    found = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "bf16"),
                                     ("amx_bf16", "AMX")) if flag in flags]
    return "+".join(found) or "no AVX2"


def conditions(extra: dict | None = None) -> str:
    import h5py
    import numpy
    import sklearn

    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
                "h5py": h5py.__version__}
    if "keras" in sys.modules:
        import keras
        versions["keras"] = f"{keras.__version__} ({keras.backend.backend()})"
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            versions["tensorflow"] = tf.__version__
    lines = [f"date: {time.strftime('%Y-%m-%d %H:%M')}",
             f"machine: {cpu_model()} ({vector_units()}), {os.cpu_count()} cores",
             "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             "command: " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return "\n".join(lines + [f"code: {code_description()}"])


def code_description() -> str:
    """The cnncodes that made the figures: version, commit and the hash of its source (what runs record)."""
    from cnncodes.features.provenance import code_version

    code = code_version()
    return (f"cnncodes {code['version']}, commit {code['commit'] or 'uncommitted'}, "
            f"source {code['source_sha256'][:12]}")
