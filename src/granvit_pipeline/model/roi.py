"""Region features from encoder patch features with RoIAlign (``torchvision.ops.roi_align``).

Geometry: patch ``(i, j)`` of the ``h x w`` grid covers encoder-input pixels
``[j * p, (j + 1) * p) x [i * p, (i + 1) * p)`` (``p = S / w``), so ``spatial_scale = w / S``
maps pixels to grid units, and ``aligned=True`` puts the value of cell ``(i, j)`` at the cell
centre (the half-pixel offset). A box covering exactly cells ``[j0, j1) x [i0, i1)`` therefore
pools exactly those cells.

``sampling_ratio=2`` (default): 2 x 2 bilinear samples per output bin. When a bin spans exactly
two cells per side the samples fall on the cell centres and the bin value is the plain mean of
those cells; for other sizes it is a smooth bilinear average. ``0`` = adaptive
(``ceil(bin size)`` samples), torchvision's own default.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align


def patches_to_map(patch_features: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B, N, C)`` row-major patch tokens -> ``(B, C, h, w)`` feature map."""
    if patch_features.dim() != 3:
        raise ValueError(f"patch_features must be (B, N, C), got {tuple(patch_features.shape)}")
    b, n, c = patch_features.shape
    h, w = grid
    if n != h * w:
        raise ValueError(f"{n} patch tokens do not fill a {h}x{w} grid")
    return patch_features.transpose(1, 2).reshape(b, c, h, w)


def check_boxes(boxes_xyxy_px: Tensor, batch_index: Tensor, batch_size: int) -> None:
    """Raise unless boxes are ``(K, 4)`` xyxy with ``x1 <= x2``, ``y1 <= y2`` and valid indices."""
    if boxes_xyxy_px.dim() != 2 or boxes_xyxy_px.shape[1] != 4:
        raise ValueError(f"boxes must be (K, 4) xyxy pixels, got {tuple(boxes_xyxy_px.shape)}")
    if batch_index.shape != (boxes_xyxy_px.shape[0],):
        raise ValueError(f"batch_index must be (K,), got {tuple(batch_index.shape)}")
    if bool((boxes_xyxy_px[:, 2] < boxes_xyxy_px[:, 0]).any()) or bool(
        (boxes_xyxy_px[:, 3] < boxes_xyxy_px[:, 1]).any()
    ):
        raise ValueError("boxes must be xyxy with x1 <= x2 and y1 <= y2 (got xywh?)")
    if batch_index.numel() and (int(batch_index.min()) < 0 or int(batch_index.max()) >= batch_size):
        raise ValueError(f"batch_index out of range for batch size {batch_size}")


def roi_features(
    patch_features: Tensor,
    boxes_xyxy_px: Tensor,
    batch_index: Tensor,
    grid: tuple[int, int],
    image_size: int,
    output_size: int,
    sampling_ratio: int = 2,
) -> Tensor:
    """Pool each box from its image's patch feature map.

    Args:
        patch_features: ``(B, N, C)`` encoder output, ``N = h * w`` row-major.
        boxes_xyxy_px: ``(K, 4)`` absolute xyxy in **encoder-input** pixels (after
            resize + pad, see :mod:`granvit_pipeline.model.data`).
        batch_index: ``(K,)`` int, which image of the batch each box belongs to.
        grid: ``(h, w)`` patch grid.
        image_size: encoder input side ``S`` in pixels (square input).
        output_size: side of the pooled map.
    Returns:
        ``(K, C, output_size, output_size)`` region features.
    """
    check_boxes(boxes_xyxy_px, batch_index, patch_features.shape[0])
    if grid[0] != grid[1]:
        raise ValueError(f"roi_features needs a square grid (square encoder input), got {grid}")
    return roi_align_fp32(
        patches_to_map(patch_features, grid), boxes_xyxy_px, batch_index, output_size,
        spatial_scale=grid[1] / image_size, sampling_ratio=sampling_ratio,
    )  # fmt: skip


def roi_align_fp32(
    inputs: Tensor,
    boxes_xyxy_px: Tensor,
    batch_index: Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """``roi_align`` (``aligned=True``) computed in float32, returned in ``inputs``' dtype.

    roi_align wants boxes in its input's dtype, and bf16 rounds pixel coordinates to 2 px above
    256 and to 4 px above 512: at the paper's 512 px input that is a quarter patch. So the
    (small) map and the boxes go through float32 instead.
    """
    rois = torch.cat([batch_index.float()[:, None], boxes_xyxy_px.float()], dim=1)
    pooled = roi_align(
        inputs.float(), rois.to(inputs.device), output_size=(output_size, output_size),
        spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=True,
    )  # fmt: skip
    return pooled.to(inputs.dtype)
