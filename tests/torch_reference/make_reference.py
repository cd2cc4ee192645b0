"""Make conv_cases.json: PyTorch's results for transposed and multi-channel convolutions.

Run once with torch installed (``python tests/torch_reference/make_reference.py``); the tests
compare convtool with the stored results, so they run without torch. Each case stores its
inputs too (small seeded random arrays), so nothing depends on a generator's version.
Written with torch 2.13.0 (CPU), float64 throughout.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def transposed_cases(rng):
    """conv_transpose2d(y, w, stride, padding, output_padding, dilation), one channel."""
    cases = []
    for (kh, kw), s, d in itertools.product([(3, 3), (2, 3), (1, 4), (3, 1)], [1, 2, 3], [1, 2]):
        span_h, span_w = (kh - 1) * d + 1, (kw - 1) * d + 1
        paddings = [("valid", (0, 0)), ("full", (span_h - 1, span_w - 1))]
        if span_h % 2 and span_w % 2:
            paddings.append(("zero", (span_h // 2, span_w // 2)))
        for (mode, p), q in itertools.product(paddings, sorted({0, s - 1})):
            m = (4, 5)
            n = [
                (mi - 1) * s - 2 * pi + span + q
                for mi, pi, span in zip(m, p, (span_h, span_w), strict=True)
            ]
            if min(n) < 1:
                continue
            y = rng.integers(-4, 5, size=m).astype(float)
            w = rng.integers(-3, 4, size=(kh, kw)).astype(float)
            out = F.conv_transpose2d(
                torch.tensor(y)[None, None],
                torch.tensor(w)[None, None],
                stride=s,
                padding=p,
                output_padding=q,
                dilation=d,
            )
            cases.append(
                {
                    "input": y.tolist(),
                    "weights": w.tolist(),
                    "stride": s,
                    "dilation": d,
                    "torch_padding": list(p),
                    "output_padding": q,
                    "convtool_padding": mode,
                    "expected": out[0, 0].numpy().tolist(),
                }
            )
    return cases


TORCH_MODES = {"zero": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def layer_cases(rng):
    """conv2d(x, w, bias, stride, padding, dilation, groups), multi-channel, every padding."""
    cases = []
    shapes = [  # (C_in, C_out, groups)
        (3, 1, 1),
        (3, 4, 1),
        (4, 4, 2),
        (3, 3, 3),
        (3, 6, 3),
        (2, 4, 2),
    ]
    for (c_in, c_out, g), mode, s, d, k in itertools.product(
        shapes, ["valid", "full", "zero", "reflect", "edge", "wrap"], [1, 2], [1, 2], [3]
    ):
        x = rng.integers(-5, 6, size=(c_in, 7, 8)).astype(float)
        w = rng.integers(-3, 4, size=(c_out, c_in // g, k, k)).astype(float)
        bias = rng.integers(-9, 10, size=c_out).astype(float)
        span = (k - 1) * d + 1
        xt = torch.tensor(x)[None]
        if mode == "valid":
            pad = 0
        elif mode == "full":
            pad = span - 1
        else:
            xt = F.pad(xt, (span // 2,) * 4, mode=TORCH_MODES[mode]) if span > 1 else xt
            pad = 0
        out = F.conv2d(
            xt, torch.tensor(w), torch.tensor(bias), stride=s, padding=pad, dilation=d, groups=g
        )
        cases.append(
            {
                "input": x.tolist(),
                "weights": w.tolist(),
                "bias": bias.tolist(),
                "stride": s,
                "dilation": d,
                "groups": g,
                "convtool_padding": mode,
                "expected": out[0].numpy().tolist(),
            }
        )
    return cases


def separable_cases(rng):
    """Depthwise (groups = C_in) then pointwise (1x1) conv2d, zero padding, with biases."""
    cases = []
    for c_in, c_out, k in [(3, 5, 3), (2, 3, 5)]:
        x = rng.integers(-5, 6, size=(c_in, 9, 8)).astype(float)
        dw = rng.integers(-3, 4, size=(c_in, 1, k, k)).astype(float)
        pw = rng.integers(-3, 4, size=(c_out, c_in, 1, 1)).astype(float)
        b1, b2 = (
            rng.integers(-5, 6, size=c_in).astype(float),
            rng.integers(-5, 6, size=c_out).astype(float),
        )
        mid = F.conv2d(
            torch.tensor(x)[None], torch.tensor(dw), torch.tensor(b1), padding=k // 2, groups=c_in
        )
        out = F.conv2d(mid, torch.tensor(pw), torch.tensor(b2))
        cases.append(
            {
                "input": x.tolist(),
                "depthwise": dw.tolist(),
                "pointwise": pw.tolist(),
                "depthwise_bias": b1.tolist(),
                "pointwise_bias": b2.tolist(),
                "expected": out[0].numpy().tolist(),
            }
        )
    return cases


def layer_transposed_cases(rng):
    """conv_transpose2d(y, w, bias, stride, groups, dilation) with layer weights."""
    cases = []
    for (c_in, c_out, g), s, d in itertools.product(
        [(3, 2, 1), (4, 4, 2), (3, 3, 3)], [1, 2], [1, 2]
    ):
        w = rng.integers(-3, 4, size=(c_out, c_in // g, 3, 3)).astype(float)
        y = rng.integers(-4, 5, size=(c_out, 4, 5)).astype(float)
        bias = rng.integers(-5, 6, size=c_in).astype(float)
        out = F.conv_transpose2d(
            torch.tensor(y)[None],
            torch.tensor(w),
            torch.tensor(bias),
            stride=s,
            groups=g,
            dilation=d,
        )
        cases.append(
            {
                "input": y.tolist(),
                "weights": w.tolist(),
                "bias": bias.tolist(),
                "stride": s,
                "dilation": d,
                "groups": g,
                "expected": out[0].numpy().tolist(),
            }
        )
    return cases


def compact(value):
    """Whole floats as ints, so the file stays small (the tests read them as float64)."""
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def main() -> None:
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(17)
    data = {
        "torch": torch.__version__,
        "transposed": transposed_cases(rng),
        "layers": layer_cases(rng),
        "separable": separable_cases(rng),
        "layers_transposed": layer_transposed_cases(rng),
    }
    (HERE / "conv_cases.json").write_text(json.dumps(compact(data), separators=(",", ":")) + "\n")
    print({k: len(v) for k, v in data.items() if isinstance(v, list)})


if __name__ == "__main__":
    main()
