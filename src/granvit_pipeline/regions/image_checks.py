"""Image-level checks of the ``validate`` stage: does each referenced image exist and decode?

Every distinct image is checked once, in a thread pool (Pillow releases the GIL while it
decodes). Checks run in this order and the first failure is the image's one rule:

1. ``image_missing``: the file does not exist (or is not a regular file).
2. ``image_undecodable``: Pillow cannot read the header (not an image, unknown format).
3. ``image_size_mismatch``: the header size differs from the annotated ``(width, height)``.
4. ``image_too_large``: ``width * height`` in the header exceeds ``max_pixels`` (decompression
   bomb guard). Checked from the header, before any pixel is decoded; Pillow's own global guard
   (``Image.MAX_IMAGE_PIXELS``, raising above twice that) is left untouched and, if it fires
   at ``Image.open``, is reported under the same rule.
5. ``image_undecodable``: ``verify()`` or a full ``load()`` fails (truncated or corrupt data).
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set, so truncation is an error.

JPEGs are decoded with ``draft`` at reduced DCT scale: the whole entropy-coded stream is still
read (so truncation is still detected) but the inverse DCT costs up to 64x less.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_RULES: tuple[str, ...] = (
    "image_missing",
    "image_undecodable",
    "image_size_mismatch",
    "image_too_large",
)


@dataclass(frozen=True)
class ImageRef:
    """One image as the region table describes it."""

    image_id: str
    path: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageCheck:
    """Outcome for one image: ``rule`` is ``None`` when the image is fine."""

    image_id: str
    rule: str | None
    message: str


def resolve_path(path: str, root: str | Path | None) -> Path:
    """``path`` itself when absolute or when no ``root`` is given, else ``root / path``."""
    p = Path(path)
    return p if root is None or p.is_absolute() else Path(root) / p


def _decode_fully(path: Path) -> None:
    """``verify()`` (container checks, e.g. PNG CRCs), then a full ``load()`` of the pixels."""
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:  # verify() leaves the object unusable: reopen
        if im.format == "JPEG":
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()


def check_image(ref: ImageRef, max_pixels: int, root: str | Path | None = None) -> ImageCheck:
    """Run the checks listed in the module docstring on one image; never raises for bad data."""
    path = resolve_path(ref.path, root)
    if not path.is_file():
        return ImageCheck(ref.image_id, "image_missing", f"image_missing: no file at {path}")
    try:
        with Image.open(path) as im:
            size = im.size
    except Image.DecompressionBombError as exc:
        return ImageCheck(ref.image_id, "image_too_large", f"image_too_large: {path}: {exc}")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        msg = f"image_undecodable: cannot read header of {path}: {exc}"
        return ImageCheck(ref.image_id, "image_undecodable", msg)
    if size != (ref.width, ref.height):
        msg = (
            f"image_size_mismatch: {path} is {size[0]}x{size[1]} but the annotation says "
            f"{ref.width}x{ref.height}"
        )
        return ImageCheck(ref.image_id, "image_size_mismatch", msg)
    if size[0] * size[1] > max_pixels:
        msg = (
            f"image_too_large: {path} is {size[0]}x{size[1]} = {size[0] * size[1]} pixels "
            f"> max_image_pixels={max_pixels} (not decoded)"
        )
        return ImageCheck(ref.image_id, "image_too_large", msg)
    try:
        _decode_fully(path)
    except Exception as exc:  # any decoder failure means the data is unusable
        msg = f"image_undecodable: {path}: {type(exc).__name__}: {exc}"
        return ImageCheck(ref.image_id, "image_undecodable", msg)
    return ImageCheck(ref.image_id, None, "ok")


class ImageChecker:
    """Checks images in a thread pool and remembers recent results by ``image_id``.

    The cache is an LRU of at most ``cache_size`` entries, so memory stays bounded; rows of an
    image are contiguous, so a hit only happens when an image reappears shortly after.
    Use as a context manager (the pool is shut down on exit).
    """

    def __init__(
        self,
        max_pixels: int,
        workers: int = 2,
        root: str | Path | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.max_pixels, self.root, self.cache_size = max_pixels, root, cache_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="imgchk")
        self._cache: OrderedDict[str, ImageCheck] = OrderedDict()
        self.checked = 0  # images actually opened (cache misses)

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut the thread pool down."""
        self._pool.shutdown(wait=True)

    def check(self, refs: Iterable[ImageRef]) -> Iterator[ImageCheck]:
        """Results for ``refs``, in order (cached ones without reopening the file)."""
        refs = list(refs)
        todo = list({r.image_id: r for r in refs if r.image_id not in self._cache}.values())
        fresh = self._pool.map(lambda r: check_image(r, self.max_pixels, self.root), todo)
        for result in fresh:
            self.checked += 1
            if result.rule is not None:
                logger.debug("%s", result.message)
            self._cache[result.image_id] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for ref in refs:
            cached = self._cache.get(ref.image_id)
            yield cached if cached is not None else check_image(ref, self.max_pixels, self.root)
