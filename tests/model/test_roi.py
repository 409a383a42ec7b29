from __future__ import annotations

import pytest
import torch

from granvit_pipeline.model.roi import patches_to_map, roi_features


def _grid_feats() -> torch.Tensor:
    """(1, 16, 2): a 4x4 grid whose channel 0 is the cell index, channel 1 random."""
    index = torch.arange(16.0)
    return torch.stack([index, torch.rand(16, generator=torch.Generator().manual_seed(0))], -1)[
        None
    ]


@pytest.mark.parametrize("cells", [(0, 0), (1, 2), (2, 2)])
def test_box_over_2x2_cells_is_their_mean(cells: tuple[int, int]) -> None:
    feats = _grid_feats()  # image 32 px, patch 8 px
    i0, j0 = cells
    box = torch.tensor([[j0 * 8.0, i0 * 8.0, (j0 + 2) * 8.0, (i0 + 2) * 8.0]])
    out = roi_features(feats, box, torch.tensor([0]), (4, 4), 32, output_size=1)
    fmap = patches_to_map(feats, (4, 4))[0]
    expected = fmap[:, i0 : i0 + 2, j0 : j0 + 2].mean(dim=(1, 2))
    assert out.shape == (1, 2, 1, 1)
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_box_cells_map_to_output_bins_and_batch_index() -> None:
    feats = torch.cat([_grid_feats(), -_grid_feats()])  # two images
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 2)
    out = roi_features(feats, box, torch.tensor([0, 1]), (4, 4), 32, output_size=2)
    fmap = patches_to_map(feats, (4, 4))
    expected = torch.nn.functional.avg_pool2d(fmap, 2)  # each bin = its 2x2 cells
    torch.testing.assert_close(out, expected)


def test_patches_to_map_is_row_major() -> None:
    fmap = patches_to_map(_grid_feats(), (4, 4))
    assert fmap[0, 0, 1, 3] == 7  # row 1, column 3 -> token 7


def test_wrong_inputs_raise() -> None:
    feats = _grid_feats()
    with pytest.raises(ValueError, match="x1 <= x2"):
        roi_features(feats, torch.tensor([[16.0, 0, 8, 8]]), torch.tensor([0]), (4, 4), 32, 1)
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        roi_features(feats, torch.tensor([[0.0, 0, 8]]), torch.tensor([0]), (4, 4), 32, 1)
    with pytest.raises(ValueError, match="batch_index"):
        roi_features(feats, torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([1]), (4, 4), 32, 1)
    with pytest.raises(ValueError, match="grid"):
        roi_features(feats, torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([0]), (4, 5), 32, 1)


def test_bf16_features_pool_at_the_exact_float32_box() -> None:
    # 512 px input, 32 x 32 grid of 16 px patches; bf16 would round x1 = 301 px to 300 px.
    feats = torch.randn(1, 32 * 32, 8, generator=torch.Generator().manual_seed(0))
    feats = feats.to(torch.bfloat16)
    box, index = torch.tensor([[301.0, 141.0, 397.0, 203.0]]), torch.tensor([0])
    out = roi_features(feats, box, index, (32, 32), 512, output_size=2)
    exact = roi_features(feats.float(), box, index, (32, 32), 512, output_size=2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, exact.to(torch.bfloat16), rtol=0, atol=0)
