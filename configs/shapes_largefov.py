"""DeepLab LargeFOV (one atrous branch) on the built-in synthetic shapes dataset.

    python train.py --config configs/shapes_largefov.py --workdir runs/shapes_largefov
    python evaluate.py --config configs/shapes_largefov.py --workdir runs/shapes_largefov --crf

configs/shapes.py with its head's four ASPP-S branches (rates 2, 4, 8, 12,
summed) replaced by LargeFOV's single branch at rate 12 (DeepLab v1
"LargeFOV" and v2 sec. 4.1: fc6 3x3 at rate 12, here one hidden 1x1 layer
of 96 as shapes.py's). Everything else (trunk, data, recipe, CRF) is
shapes.py's, so `python -m benchmarks.compare` sets the paper's LargeFOV
against ASPP comparison (v2 Table 3) on the same trunk and budget:
val mIoU 0.8993, 0.9233 with the CRF, against ASPP-S's 0.9136 / 0.9425
(`python -m benchmarks.compare --output runs/compare1400`, 2026-12-02;
benchmarks/README.md, "Model families on the built-in dataset"). `configs/tiny.py:shapes_largefov` is it shrunk.
"""

from configs import parts
from configs import shapes


def get_config():
  config = shapes.get_config()
  config.model.head = parts.aspp(rates=(12,), hidden=(96,))  # LargeFOV: one branch, rate 12.
  return config
