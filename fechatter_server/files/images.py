"""Image probing and thumbnails with Pillow. CPU-bound: callers run these in a worker thread.

The pixel count is checked from the header before any pixel is decoded, so a small file that would
expand into gigabytes (a decompression bomb) is refused without being decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

THUMBNAIL_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
THUMBNAIL_MIME = "image/webp"
_ORIENTATION = 0x0112  # EXIF tag
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

# The limit is checked explicitly below (before decoding); Pillow's warning for it would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def configure(max_pixels: int) -> None:
    """Pillow's own guard (an error past twice the limit) follows the configured limit too."""
    Image.MAX_IMAGE_PIXELS = max_pixels


class ImageTooLarge(Exception):
    pass


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    thumbnail: bytes | None


def probe(path: Path, *, max_pixels: int, thumbnail_px: int) -> ImageInfo | None:
    """Size and thumbnail of an image; None when Pillow cannot read it (kept as a plain file).

    Raises ImageTooLarge when the image has more than ``max_pixels`` pixels.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height}")
            if image.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
                width, height = height, width  # as displayed: browsers follow the EXIF orientation
            image.seek(0)  # the first frame of an animation
            image.draft("RGB", (thumbnail_px * 2, thumbnail_px * 2))  # JPEG: decode at a reduced scale
            frame = ImageOps.exif_transpose(image)
            frame.thumbnail((thumbnail_px, thumbnail_px))
            if frame.mode not in ("RGB", "RGBA"):
                frame = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
            out = io.BytesIO()
            frame.save(out, format="WEBP", quality=80)
            return ImageInfo(width=width, height=height, thumbnail=out.getvalue())
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        # Truncated or malformed: the bytes are stored as uploaded, without a thumbnail.
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info
