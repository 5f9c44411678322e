"""Images read from a dataset's column, as :class:`~mapgen.core.prompt.Image` values that chat backends send.

One place turns whatever an image column holds into bytes and a media type (or a URL to pass through):

- the ``datasets`` ``Image`` feature: decoded PIL images, or ``{"bytes", "path"}`` dicts with
  ``Image(decode=False)``;
- PIL images (encoded losslessly as PNG: a decoded image no longer has its file's bytes);
- raw bytes, and local paths (``str`` or ``os.PathLike``): sent as they are when they are PNG, JPEG, GIF
  or WebP (the formats OpenAI's vision models take), else re-encoded as PNG with Pillow;
- ``http(s)://`` and ``data:`` URLs: passed through, the server fetches them;
- a list of any of these: several images for one prompt.

Load ``Image(decode=False)`` columns to send a JPEG photo's own bytes instead of a PNG of its pixels. A
value that cannot be read (a missing file, bytes that are no image) raises :class:`ImageError`: map
functions write it to the row's error column as an ``input`` error, and the run goes on.

Example:
    >>> png = bytes.fromhex("89504e470d0a1a0a") + b"..."
    >>> load_image(png).media_type
    'image/png'
    >>> load_image("https://example.com/chart.png").url
    'https://example.com/chart.png'
    >>> [image.media_type for image in load_images([png, {"bytes": png, "path": "a.png"}])]
    ['image/png', 'image/png']
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

from mapgen.core.prompt import Image
from mapgen.errors import INPUT

URL_SCHEMES = ("http://", "https://", "data:")
"""Strings that are sent as they are, for the server to fetch or decode."""

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageError(ValueError):
    """An image column's value that cannot be read as an image; the row fails with an ``input`` error."""

    kind = INPUT


def load_images(value: Any) -> tuple[Image, ...]:
    """The images of one row's image column: one for a single value, several for a list of them.

    Raises:
        ImageError: a value that is no image (see the module's docstring for what is one).
    """
    if isinstance(value, (list, tuple)):
        return tuple(load_image(item) for item in value)
    return (load_image(value),)


def load_image(value: Any) -> Image:
    """One image column value as an :class:`~mapgen.core.prompt.Image`.

    Raises:
        ImageError: a value that is no image, a file that cannot be read, or bytes in a format that
            Pillow cannot read either.
    """
    if isinstance(value, str) and value.startswith(URL_SCHEMES):
        return Image(url=value)
    if isinstance(value, Mapping):  # datasets' Image(decode=False): {"bytes": ..., "path": ...}
        if value.get("bytes") is not None:
            return image_from_bytes(bytes(value["bytes"]))
        if value.get("path"):
            return load_image(value["path"])
        raise ImageError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return image_from_bytes(bytes(value))
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as file:
                data = file.read()
        except OSError as error:
            raise ImageError(f"cannot read image file {os.fspath(value)!r}: {error.strerror}") from None
        return image_from_bytes(data)
    if _is_pil_image(value):
        return Image(_png(value), "image/png")
    raise ImageError(
        f"an image is a PIL image, bytes, a path, a URL or a {{'bytes', 'path'}} dict, got "
        f"{type(value).__name__}"
    )


def media_type(data: bytes) -> str | None:
    """The media type of PNG, JPEG, GIF or WebP bytes, from their first bytes; ``None`` for others.

    Example:
        >>> media_type(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 "), media_type(b"BM...")
        ('image/webp', None)
    """
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_from_bytes(data: bytes) -> Image:
    """Bytes as they are when vision APIs take their format, else re-encoded as PNG with Pillow.

    Raises:
        ImageError: bytes that Pillow cannot read as an image either.
    """
    kind = media_type(data)
    if kind is not None:
        return Image(data, kind)
    try:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as image:
            return Image(_png(image), "image/png")
    except ImportError:
        raise ImportError(
            "images other than PNG, JPEG, GIF and WebP need Pillow: pip install 'mapgen[vision]'."
        ) from None
    except Exception as error:  # Pillow's UnidentifiedImageError, or a truncated file
        raise ImageError(f"not an image Pillow can read ({type(error).__name__}: {error})") from None


def _png(image: Any) -> bytes:
    """A PIL image as PNG bytes, lossless; modes PNG cannot hold (CMYK, YCbCr, float) as RGB(A)."""
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _is_pil_image(value: Any) -> bool:
    # PIL is imported only where a PIL image can be: mapgen does not need Pillow for text.
    module = type(value).__module__
    if not module.startswith("PIL."):
        return False
    from PIL import Image as PILImage

    return isinstance(value, PILImage.Image)
