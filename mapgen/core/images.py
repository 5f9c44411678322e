"""Images read from a dataset's column, as :class:`~mapgen.core.prompt.Image` values that chat backends send.

One place turns whatever an image column holds into bytes and a media type (or a URL to pass through):

- the ``datasets`` ``Image`` feature: decoded PIL images, or ``{"bytes", "path"}`` dicts with
  ``Image(decode=False)``;
- PIL images (encoded losslessly as PNG: a decoded image no longer has its file's bytes);
- raw bytes, local paths (``str`` or ``os.PathLike``) and ``data:`` URLs (RFC 2397): sent as they are
  when they are PNG, JPEG, GIF or WebP (the formats vision APIs take, by their own bytes' signature, not a
  declared type), else re-encoded as PNG with Pillow;
- ``http(s)://`` URLs: passed through, the server fetches them;
- a list of any of these: several images for one prompt.

Load ``Image(decode=False)`` columns to send a JPEG photo's own bytes instead of a PNG of its pixels. A
``data:`` URL is read as the bytes it holds, so that each API gets them in its own form (Anthropic fetches
its ``url`` sources over HTTP: a ``data:`` URL must go as a ``base64`` source). A value that cannot be read
raises :class:`ImageError`: a missing file, a path that is no regular file (a device, a FIFO, a
directory), an image over :data:`MAX_IMAGE_BYTES`, a URL of another scheme, bytes that are no image. Map
functions write it to the row's error column as an ``input`` error, send nothing for the row, and go on.

Example:
    >>> png = bytes.fromhex("89504e470d0a1a0a") + b"..."
    >>> load_image(png).media_type
    'image/png'
    >>> load_image("https://example.com/chart.png").url
    'https://example.com/chart.png'
    >>> [image.media_type for image in load_images([png, {"bytes": png, "path": "a.png"}])]
    ['image/png', 'image/png']
    >>> load_image("data:image/png;base64,iVBORw0KGgouLi4=") == load_image(png)
    True
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import os
import re
import stat
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mapgen.core.prompt import Image
from mapgen.errors import ImageError

URL_SCHEMES = ("http", "https")
"""URL schemes sent as they are, for the server to fetch; ``data:`` URLs are read as their bytes, and
others (``ftp://``, ``file://``, ``s3://``) refused."""

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The largest image read, in bytes: a file (checked before it is read), bytes, a ``data:`` URL's data, a
PIL image's PNG. A larger one fails its row with an ``input`` error instead of filling memory; vision APIs
refuse larger ones anyway (OpenAI takes 20 MB an image, Anthropic 5 MB). Set
``mapgen.core.images.MAX_IMAGE_BYTES`` to change it."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


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
    if isinstance(value, str) and (scheme := _scheme(value)) is not None:
        if scheme in URL_SCHEMES:
            return Image(url=value)
        if scheme == "data":
            return dataclasses.replace(image_from_bytes(data_url_bytes(value)[0]), source=value)
        raise ImageError(f"only http(s):// and data: URLs are sent as images, got a {scheme}: URL")
    if isinstance(value, Mapping):  # datasets' Image(decode=False): {"bytes": ..., "path": ...}
        if value.get("bytes") is not None:
            return image_from_bytes(bytes(value["bytes"]))
        if value.get("path"):
            return load_image(value["path"])
        raise ImageError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return image_from_bytes(bytes(value))
    if isinstance(value, (str, os.PathLike)):
        return image_from_bytes(read_file(value))
    if _is_pil_image(value):
        return Image(_checked(_png(value)), "image/png")
    raise ImageError(
        f"an image is a PIL image, bytes, a path, a URL or a {{'bytes', 'path'}} dict, got "
        f"{type(value).__name__}"
    )


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file: a regular file of at most :data:`MAX_IMAGE_BYTES`.

    Devices, FIFOs and directories are refused before they are opened (``/dev/zero`` would fill memory, a
    FIFO wait for a writer), and checked again on the open file, in case the path changed meanwhile.

    Raises:
        ImageError: a path that is missing, unreadable, no regular file, or over the limit.
    """
    name = os.fspath(path)
    try:
        _check_regular(name, os.stat(name).st_mode)
        # O_NONBLOCK: should the path have become a FIFO since, opening it does not wait for a writer.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as file:
            info = os.fstat(file.fileno())
            _check_regular(name, info.st_mode)
            _check_size(info.st_size)
            return _checked(file.read(MAX_IMAGE_BYTES + 1))  # + 1: a file that grew is seen
    except OSError as error:
        raise ImageError(f"cannot read image file {name!r}: {error.strerror or error}") from None


def data_url_bytes(url: str) -> tuple[bytes, str]:
    """The bytes of a ``data:`` URL (RFC 2397: ``data:[<media type>][;base64],<data>``) and its declared media
    type (``text/plain`` when it declares none; ``image/jpg``, a common misspelling, as ``image/jpeg``).

    Raises:
        ImageError: no comma before the data, data that is not valid base64, or more than
            :data:`MAX_IMAGE_BYTES` of it (refused before it is decoded).

    Example:
        >>> data_url_bytes("data:image/jpg;base64,/9j/")
        (b'\\xff\\xd8\\xff', 'image/jpeg')
        >>> data_url_bytes("data:,a%20b")
        (b'a b', 'text/plain')
    """
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageError("a data: URL with no comma before its data")
    kind, *parameters = header[len("data:") :].split(";")
    kind = kind.strip().lower() or "text/plain"
    kind = _MEDIA_ALIASES.get(kind, kind)
    if "base64" not in (p.strip().lower() for p in parameters):
        return _checked(urllib.parse.unquote_to_bytes(payload)), kind
    if "%" in payload:
        payload = urllib.parse.unquote(payload)
    payload = "".join(payload.split())  # line breaks are allowed in base64 data, and not data
    if len(payload) // 4 * 3 > MAX_IMAGE_BYTES + 2:
        _check_size(len(payload) // 4 * 3)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("a data: URL whose data is not valid base64") from None
    return _checked(data), kind


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
        ImageError: bytes that Pillow cannot read as an image either, or more than :data:`MAX_IMAGE_BYTES`.
    """
    _check_size(len(data))
    kind = media_type(data)
    if kind is not None:
        return Image(data, kind)
    try:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as image:
            png = _png(image)
    except ImportError:
        raise ImportError(
            "images other than PNG, JPEG, GIF and WebP need Pillow: pip install 'mapgen[vision]'."
        ) from None
    except Exception as error:  # Pillow's UnidentifiedImageError, or a truncated file
        raise ImageError(f"not an image Pillow can read ({type(error).__name__}: {error})") from None
    return Image(_checked(png), "image/png")  # a PNG of the pixels can be larger than their file


def _scheme(value: str) -> str | None:
    """A URL's scheme, lower case: ``data``, or one before ``://``; ``None`` for a path (``C:\\x`` too)."""
    match = _SCHEME.match(value)
    if match is None:
        return None
    scheme = match.group(1).lower()
    return scheme if scheme == "data" or value[match.end() :].startswith("//") else None


def _check_regular(name: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((kind for test, kind in kinds if test(mode)), "something else")
    raise ImageError(f"image file {name!r} is not a regular file: it is {kind}")


def _checked(data: bytes) -> bytes:
    """``data``, if it is within :data:`MAX_IMAGE_BYTES`."""
    _check_size(len(data))
    return data


def _check_size(size: int) -> None:
    if size > MAX_IMAGE_BYTES:
        raise ImageError(
            f"the image is {size} bytes, over the limit of {MAX_IMAGE_BYTES} bytes "
            "(mapgen.core.images.MAX_IMAGE_BYTES)"
        )


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
