"""Decoding image files to RGB uint8 and bringing them to the store's one ingest size."""
import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def decode_rgb(data: bytes) -> np.ndarray | None:
    """RGB uint8 HxWx3 from encoded bytes; None when the bytes are not a readable image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    if img.dtype == np.uint16:  # 16-bit PNG
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:  # alpha is dropped, as PIL's convert("RGB") does
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """The ingest rule: scale the shorter side to `size` (area when shrinking, bicubic when enlarging),
    then take the centred size x size square."""
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top:top + size, left:left + size]
    return img
