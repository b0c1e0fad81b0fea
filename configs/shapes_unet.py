"""U-Net (models/unet.py, padded form) on the built-in synthetic shapes dataset.

    python train.py --config configs/shapes_unet.py --workdir runs/shapes_unet
    python evaluate.py --config configs/shapes_unet.py --workdir runs/shapes_unet

The same data, crops, optimiser and batch as configs/shapes.py (the DeepLab
demo), with U-Net in place of the atrous trunk and ASPP: depth 4 (the
paper's), base width 8 (the paper's 64 / 8: 8 .. 128 channels), the 'same'
(padded) form so the logits are the image's size, and BatchNorm (the paper
has none) for the demo's base lr 0.1; 600 steps.

Measured on the shared 2-core CPU (other jobs running, load ~7): 5.7-7.8
images/s (U-Net's full-resolution convs of 8-16 channels; the demo's stride-8
trunk does ~30), 13.5 minutes of training, then val mIoU 0.357 (seed 1;
background 0.97, square 0.47, disk 0.29, star 0.06, triangle 0.00; loss still
falling, 0.44 at step 600): undertrained, not U-Net's ceiling; more steps
were not measured. Speed alone: `--config.num_train_steps=30` (10 images/s
with the machine less loaded).
The 'valid' form trains and evaluates too with
`--config.model.backbone.padding=valid --config.model.head.padding=valid`
(mirror-extended input, the paper's overlap-tile; slower: a 128 crop runs as
a 316 px tile at depth 4). `configs/tiny.py:shapes_unet` is this shrunk for
tests (seconds, meaningless numbers).
"""

from configs import parts
from configs import shapes


def get_config():
  config = shapes.get_config()
  backbone, head = parts.unet(depth=4, base_width=8, padding='same')
  config.model = parts.model(backbone, head, atrous_impl='dilation')
  # Full-resolution convs of 8-16 channels run at ~10 img/s on the 2-core
  # CPU (a third of the demo's speed), so fewer steps than its 1,400.
  config.num_train_steps = 600
  return config
