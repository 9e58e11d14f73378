"""FDA (pixda_core.data.fda) against a float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixda_core.data.fda import fda_source_to_target, low_freq_window

pytestmark = pytest.mark.unit


def _fda_numpy64(src, trg, beta):
    """The definition, in float64 numpy, one image and channel at a time."""
    out = np.empty_like(src, dtype=np.float64)
    h, w = src.shape[-2:]
    b = int(np.floor(min(h, w) * beta))
    ch, cw = h // 2, w // 2
    for i in range(src.shape[0]):
        for c in range(src.shape[1]):
            fs = np.fft.fftshift(np.fft.fft2(src[i, c].astype(np.float64)))
            ft = np.fft.fftshift(np.fft.fft2(trg[i, c].astype(np.float64)))
            amp, pha = np.abs(fs), np.angle(fs)
            amp[ch - b : ch + b + 1, cw - b : cw + b + 1] = np.abs(ft)[
                ch - b : ch + b + 1, cw - b : cw + b + 1
            ]
            out[i, c] = np.real(np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * pha))))
    return out


@pytest.mark.parametrize("hw,beta", [((64, 128), 0.01), ((65, 129), 0.05), ((32, 32), 0.1)])
def test_fda_matches_float64_numpy(hw, beta):
    g = np.random.default_rng(0)
    src = g.uniform(0, 255, (2, 3, *hw)).astype(np.float32)
    trg = g.uniform(0, 255, (2, 3, *hw)).astype(np.float32)
    got = fda_source_to_target(torch.from_numpy(src), torch.from_numpy(trg), beta).numpy()
    want = _fda_numpy64(src, trg, beta)
    assert np.abs(got - want).max() / 255 < 1e-4


def test_window_is_inclusive_and_centred():
    rows, cols = low_freq_window(512, 1024, 0.01)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (251, 262, 507, 518)  # b = 5
    rows, cols = low_freq_window(10, 10, 0.01)
    assert rows == slice(5, 6) and cols == slice(5, 6)  # b = 0: only the DC term


def test_fda_moves_low_frequencies_only():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(1, 3, 64, 64, generator=g) * 255
    trg = torch.rand(1, 3, 64, 64, generator=g) * 100 + 120
    out = fda_source_to_target(src, trg, beta=0.0)  # the DC term: the mean colour
    assert torch.allclose(out.mean((-2, -1)), trg.mean((-2, -1)), atol=1e-3)
    assert torch.allclose(
        out - out.mean((-2, -1), keepdim=True), src - src.mean((-2, -1), keepdim=True), atol=1e-3
    )
    one_style = fda_source_to_target(torch.cat([src, src]), trg, beta=0.05)
    assert one_style.shape == (2, 3, 64, 64) and torch.allclose(one_style[0], one_style[1])
    with pytest.raises(ValueError, match="differ in size"):
        fda_source_to_target(src, trg[..., :32], 0.01)
