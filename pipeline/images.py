"""Decoding image files to RGB uint8 and bringing them to the store's one ingest size."""
import cv2
import numpy as np

from .image_headers import image_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# A 50-megapixel RGB image decodes to 150 MB (a 16-bit RGBA PNG to 400 MB); a header that claims more
# is refused before decoding, so one hostile file cannot take gigabytes.
MAX_MEGAPIXELS = 50


class BadImage(ValueError):
    """Bytes that are not decoded; the message says why, e.g. "an empty file"."""


def check_header(data: bytes) -> None:
    """Raises BadImage unless the bytes are a JPEG, PNG or BMP of a size within the pixel limit."""
    if not data:
        raise BadImage("an empty file")
    size = image_size(data)
    if size is None:
        raise BadImage("not a JPEG, PNG or BMP file with a readable header")
    width, height = size
    if width == 0 or height == 0:
        raise BadImage(f"its header says {width}x{height} pixels")
    if width * height > MAX_MEGAPIXELS * 1_000_000:
        raise BadImage(f"larger than the {MAX_MEGAPIXELS}-megapixel limit: {width}x{height}")


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8 HxWx3 from encoded bytes; BadImage saying why when they are not a readable image."""
    check_header(data)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        raise BadImage("OpenCV could not decode it") from None
    if img is None or img.size == 0:
        raise BadImage("its pixel data is damaged or incomplete")
    if img.dtype == np.uint16:  # 16-bit PNG
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:  # alpha is dropped, as PIL's convert("RGB") does
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_rgb(data: bytes) -> np.ndarray | None:
    """RGB uint8 HxWx3 from encoded bytes; None when the bytes are not a readable image."""
    try:
        return decode_image(data)
    except BadImage:
        return None


def scaled_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) of an h x w image whose shorter side is scaled to `size`."""
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """The ingest rule: scale the shorter side to `size` (area when shrinking, bicubic when enlarging),
    then take the centred size x size square."""
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        nh, nw = scaled_size(h, w, size)
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top:top + size, left:left + size]
    return img
