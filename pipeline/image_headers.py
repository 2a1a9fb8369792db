"""Width and height from an image file's header, read before decoding: a file that claims to be huge
is refused before a decoder allocates anything. Only the formats folder data sets hold (JPEG, PNG, BMP)."""
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
# JPEG start-of-frame markers carry the size: C0..CF, except DHT (C4), JPG (C8) and DAC (CC).
JPEG_FRAME_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0..7 have no length field


def png_size(data: bytes) -> tuple[int, int] | None:
    """IHDR, which the PNG standard puts first: width and height as big-endian uint32."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The first frame header, found by walking the marker segments (EXIF thumbnails live inside APP1,
    which is skipped whole, so their frame headers are never mistaken for the image's)."""
    i = len(JPEG_SIGNATURE)
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in JPEG_STANDALONE_MARKERS:
            i += 2
        elif marker in JPEG_FRAME_MARKERS:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        else:
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def bmp_size(data: bytes) -> tuple[int, int] | None:
    """The DIB header after the 14-byte file header: 16-bit sizes in the old OS/2 one (12 bytes long),
    signed 32-bit ones (negative height: stored top-down) in every later one."""
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header states them; None when the bytes are not a JPEG, PNG or BMP whose
    header can be read."""
    if data.startswith(PNG_SIGNATURE):
        return png_size(data)
    if data.startswith(JPEG_SIGNATURE):
        return jpeg_size(data)
    if data.startswith(b"BM"):
        return bmp_size(data)
    return None
