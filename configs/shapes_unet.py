"""U-Net (models/unet.py, padded form) on the built-in synthetic shapes dataset.

    python train.py --config configs/shapes_unet.py --workdir runs/shapes_unet
    python evaluate.py --config configs/shapes_unet.py --workdir runs/shapes_unet

The same data, crops, optimiser and batch as configs/shapes.py (the DeepLab
demo), with U-Net in place of the atrous trunk and ASPP: depth 4 (the
paper's), base width 8 (the paper's 64 / 8: 8 .. 128 channels), the 'same'
(padded) form so the logits are the image's size, and BatchNorm (the paper
has none) for the demo's base lr 0.1; shapes.py's 1,400 steps of 8.

Measured by `python -m benchmarks.compare --output runs/compare1400` (the
same config at 1,400 steps, 2026-12-02, 2-core CPU shared with other jobs):
val mIoU 0.6048, 0.6325 with the CRF; 19.3 training images/s (U-Net's
full-resolution convs of 8-16 channels; shapes.py's stride-8 trunk does ~30
there), 10m55s of training. Its loss is still falling at 1,400 steps (0.35
at step 900, 0.28 at 1,400): an
undertrained U-Net, not its ceiling (600 steps gave 0.357).
The 'valid' form trains and evaluates too with
`--config.model.backbone.padding=valid --config.model.head.padding=valid`
(mirror-extended input, the paper's overlap-tile; slower: a 128 crop runs as
a 316 px tile at depth 4). `configs/tiny.py:shapes_unet` is this shrunk for
tests (seconds, meaningless numbers).
"""

from configs import family_parts
from configs import parts
from configs import shapes


def get_config():
  config = shapes.get_config()
  backbone, head = family_parts.unet(depth=4, base_width=8, padding='same')
  config.model = parts.model(backbone, head, atrous_impl='dilation')
  return config
