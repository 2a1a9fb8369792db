"""Which device the Keras backend computes on, and the largest batch that fits it."""
import numpy as np

from cnncodes.features.errors import MAX_BATCH

CPU_BATCH = 64  # on CPUs throughput stops growing well before this, while memory keeps growing


def accelerator() -> str | None:
    """Name of the backend's accelerator, or None on CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        d = jax.devices()[0]
        return None if d.platform == "cpu" else f"{d.platform}:{d.device_kind}"
    if backend == "torch":
        import torch
        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else None
    # TensorFlow (and others keras.distribution supports): ask Keras, not the framework
    devices = [d for d in keras.distribution.list_devices() if not d.lower().startswith("cpu")]
    return devices[0] if devices else None


def native_bf16() -> bool:
    """Whether bfloat16 arithmetic is native here: on an accelerator, or a CPU with AVX512_BF16 or AMX (without
    them bf16 is emulated and several times slower than float32)."""
    if accelerator() is not None:
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_device() -> str:
    import keras

    return f"{accelerator() or 'cpu'} ({keras.backend.backend()} backend)"


def is_out_of_memory(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return any(s in text for s in ("resourceexhausted", "resource_exhausted", "out of memory", "outofmemory"))


def auto_batch_size(model, image_shape, largest: int = MAX_BATCH, log=print) -> int:
    """On an accelerator: double the batch until the device runs out of memory, keep the last that ran.
    On CPU: CPU_BATCH (an OOM there kills the process instead of raising)."""
    if accelerator() is None:
        return CPU_BATCH
    batch, good = 32, None
    while batch <= largest:
        try:
            model.predict_on_batch(np.zeros((batch, *image_shape), np.uint8))
            good = batch
            batch *= 2
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            break
    good = good or 16
    log(f"features: --batch-size auto chose {good} on {describe_device()}")
    return good
