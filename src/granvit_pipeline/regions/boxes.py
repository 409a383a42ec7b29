"""The one box convention of the project, stated once.

**Data (region table, shards, model inputs):** absolute pixel coordinates, ``xyxy`` order,
``float32``. The origin is the top-left corner of the top-left pixel, x grows right, y grows
down; a box covers the continuous area ``[x1, x2) x [y1, y2)``, so a box over the whole
``W x H`` image is ``(0, 0, W, H)``. A valid box has ``0 <= x1 < x2 <= W`` and
``0 <= y1 < y2 <= H``.

**Text (prompts and answers):** the same box divided by image width/height, i.e. normalised
``xyxy`` in ``[0, 1]`` (``model/box_codec.py`` formats and parses it).

Everything that reads another convention (COCO/VG ``xywh``, ICDAR quadrilaterals) converts at
the reader with the helpers below and nowhere else.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]


def xywh_to_xyxy(boxes: npt.ArrayLike) -> FloatArray:
    """``(..., 4)`` boxes ``(x, y, width, height)`` -> ``(..., 4)`` ``(x1, y1, x2, y2)``."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def quad_to_xyxy(points: npt.ArrayLike) -> FloatArray:
    """``(..., 8)`` quadrilateral ``x1,y1,...,x4,y4`` -> enclosing axis-aligned ``xyxy`` box."""
    p = np.asarray(points, dtype=np.float64).reshape(*np.shape(points)[:-1], 4, 2)
    return np.concatenate([p.min(axis=-2), p.max(axis=-2)], axis=-1)


def normalize_xyxy(boxes: npt.ArrayLike, width: npt.ArrayLike, height: npt.ArrayLike) -> FloatArray:
    """Absolute-pixel ``(..., 4)`` xyxy boxes -> normalised ``[0, 1]`` xyxy.

    ``width``/``height`` broadcast against the leading dimensions (one value per box or per
    image). Raises ``ValueError`` for non-positive image sizes instead of producing inf/NaN.
    """
    b = np.asarray(boxes, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    if np.any(w <= 0) or np.any(h <= 0):
        raise ValueError("image width and height must be positive to normalise boxes")
    scale = np.stack(np.broadcast_arrays(w, h, w, h), axis=-1)
    return b / scale


def denormalize_xyxy(
    boxes: npt.ArrayLike, width: npt.ArrayLike, height: npt.ArrayLike
) -> FloatArray:
    """Normalised ``[0, 1]`` xyxy boxes -> absolute-pixel xyxy boxes (inverse of the above)."""
    b = np.asarray(boxes, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    scale = np.stack(np.broadcast_arrays(w, h, w, h), axis=-1)
    return b * scale


def clip_xyxy(boxes: npt.ArrayLike, width: float, height: float) -> FloatArray:
    """Clip absolute xyxy boxes to the image ``[0, W] x [0, H]``."""
    b = np.array(boxes, dtype=np.float64, copy=True)
    b[..., 0::2] = b[..., 0::2].clip(0, width)
    b[..., 1::2] = b[..., 1::2].clip(0, height)
    return b
