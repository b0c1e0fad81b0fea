"""DeepLab v2 ResNet-101 ASPP-L on Cityscapes (19 classes, fine annotations).

    python train.py --config configs/cityscapes_aspp.py --workdir runs/cityscapes_aspp
    python evaluate.py --config configs/cityscapes_aspp.py --workdir runs/cityscapes_aspp

Data: put `leftImg8bit_trainvaltest.zip` and `gtFine_trainvaltest.zip` (from
https://www.cityscapes-dataset.com/downloads/, registration needed) in
`~/tensorflow_datasets/downloads/manual` (or `--config.dataset.manual_dir`).
The first run prepares TFDS's `cityscapes/semantic_segmentation` (2,975 train,
500 validation, 1,525 test frames, 1024x2048); label ids are mapped to the 19
train ids in the input pipeline (everything else is void, 255).

Published (v2 paper, ResNet-101 ASPP): test 70.4 mIoU, val 71.4 with CRF.
The paper gives few training details for Cityscapes; this config is our
choice, not the paper's: the VOC ASPP recipe (frozen BatchNorm, lr 2.5e-4
poly, random scales 0.5-1.5, flips) with larger crops (513: road scenes are
large), no MSC and 40,000 steps. Not trained here (no Cityscapes data).
Evaluation pads whole 1024x2048 frames (`input.eval_size`) and infers them
in 513x513 windows at stride 342 (`eval.mode='sliding'`), averaging overlaps.
"""

from configs import parts
from configs import voc_aspp
from deeplab_jax.data import cityscapes


def get_config():
  config = voc_aspp.get_config()
  config.dataset = parts.dataset(
      'cityscapes', len(cityscapes.CLASS_NAMES), cityscapes.CLASS_NAMES,  # 19 train ids.
      builder_config='semantic_segmentation',  # TFDS's own builder (manual download), gtFine.
      train_split='train', eval_split='validation')  # 2,975 / 500 frames.
  config.input = parts.input_(
      crop_size=513, eval_size=(1024, 2048),  # Whole frames, padded to themselves.
      scales=config.input.scales,
      shuffle_buffer=512)  # 1024x2048 frames are 6 MB decoded.
  config.eval.mode = 'sliding'  # 3 x 6 windows of 513 per frame.
  config.eval.window = (513, 513)
  config.eval.stride = (342, 342)
  config.eval.trimap_boundary = 'edges'  # Void marks regions here, not object outlines.
  config.model.input_scales = (1.0,)  # No MSC.
  config.num_train_steps = 40000  # About 135 epochs of 2,975 frames at batch 10.
  return config
