"""Perceptual hashes of the stored images, by imagehash (pHash: the signs of an image's lowest DCT frequencies
against their median; dHash: whether each pixel is brighter than its right neighbour, on an 8x9 thumbnail): a
re-encoded, rescaled or brightened copy keeps nearly every bit, which its CNN codes do not promise. Computed
once, a block of images at a time (memory flat), and kept in the store (features/hashes.py).

Hamming distances are searched as cosine similarities (classifiers/heads/neighbors.py, exact and in blocks):
bits as +-1 give cos = 1 - 2 * Hamming / bits."""
import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.features.hashes import kept_hashes, save_hashes
from cnncodes.pipeline.console import progress_bar

try:  # an optional extra: `pip install cnncodes[audit]`
    import imagehash
    from PIL import Image
except ImportError:
    imagehash = None

HASH_BITS = 64             # imagehash's default 8x8 hashes
KINDS = ("phash", "dhash")  # wavelet and average hashes collide on CIFAR's 32-pixel photos (bench/HISTORY.md)
FLAT = 0                   # the flags byte: bit 0 set when the image has no detail, so its hashes say nothing
# grey levels of standard deviation below which an image is flat (one colour, a 1-pixel image enlarged): every
# flat image hashes alike, so its hashes are no evidence
FLAT_STD = 1.0
BLOCK = 1024               # images hashed at a time
WIDTH = len(KINDS) * HASH_BITS // 8 + 1  # bytes a row: each hash packed, then the flags


def require_imagehash():
    if imagehash is None:
        raise UserError("the audit's perceptual hashes need imagehash, which is not installed: "
                        "pip install cnncodes[audit]")


def method() -> str:
    """What made the kept hashes: a newer imagehash may hash otherwise, so its hashes are computed again."""
    return f"{'-'.join(KINDS)}-{HASH_BITS}-imagehash{imagehash.__version__}"


def hash_images(images: np.ndarray) -> np.ndarray:
    """(n, WIDTH) uint8: each image's hashes packed, then its flags."""
    out = np.zeros((len(images), WIDTH), np.uint8)
    for i, image in enumerate(np.asarray(images)):
        picture = Image.fromarray(np.ascontiguousarray(image))
        bits = [imagehash.phash(picture).hash, imagehash.dhash(picture).hash]
        out[i, :-1] = np.packbits(np.concatenate([b.ravel() for b in bits]))
        out[i, -1] = (image.mean(axis=-1).std() < FLAT_STD) << FLAT
    return out


def image_hashes(store, progress: bool = True) -> np.ndarray:
    """The store's hashes, row for row: kept ones, or computed now and kept."""
    require_imagehash()
    kept = kept_hashes(store, method(), (WIDTH,))
    if kept is not None:
        return kept
    out = np.empty((store.n, WIDTH), np.uint8)
    with progress_bar(total=store.n, desc="audit: perceptual hashes", unit="img", disable=not progress) as bar:
        for start in range(0, store.n, BLOCK):
            stop = min(start + BLOCK, store.n)
            out[start:stop] = hash_images(store.image_rows(start, stop))
            bar.update(stop - start)
    save_hashes(store, method(), out)
    return out


def signs(hashes: np.ndarray, kind: str) -> np.ndarray:
    """(n, HASH_BITS) float32 +-1: one kind's bits, for a cosine search of Hamming distance."""
    k = KINDS.index(kind)
    bits = np.unpackbits(hashes[:, k * HASH_BITS // 8:(k + 1) * HASH_BITS // 8], axis=1)
    return bits.astype(np.float32) * 2 - 1


def hamming(hashes: np.ndarray, a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Hamming distance of one kind's hashes between rows a[i] and b[i]."""
    k = KINDS.index(kind)
    cols = slice(k * HASH_BITS // 8, (k + 1) * HASH_BITS // 8)
    return np.unpackbits(hashes[a, cols] ^ hashes[b, cols], axis=1).sum(axis=1)


def flat(hashes: np.ndarray) -> np.ndarray:
    return (hashes[:, -1] >> FLAT & 1).astype(bool)
