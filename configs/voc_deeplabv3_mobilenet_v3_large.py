"""torchvision's deeplabv3_mobilenet_v3_large: MobileNetV3-Large (output stride 16) + DeepLabHead.

    python -m deeplab_jax.convert \
        --input ~/.cache/torch/hub/checkpoints/deeplabv3_mobilenet_v3_large-fc3c493d.pth \
        --config configs/voc_deeplabv3_mobilenet_v3_large.py --output weights/dlv3_mnv3
    python evaluate.py --config configs/voc_deeplabv3_mobilenet_v3_large.py --workdir weights/dlv3_mnv3

The architecture of torchvision/models/segmentation/deeplabv3.py (torchvision
0.28.0): `mobilenet_v3_large(dilated=True).features` (the last stage at rate
2: output stride 16, 960 channels), DeepLabHead(960, 21) on its last map: ASPP
at rates (12, 24, 36) with image pooling, 256 wide, project dropout 0.5, an
extra 3x3 256 conv + BN + ReLU and a 1x1 to classes; logits upsampled with
F.interpolate(bilinear, align_corners=False); ImageNet normalisation. The
file's aux_classifier (FCNHead(40) on features.4) is dropped.

Published (DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1's
meta in deeplabv3.py): mIoU 60.3, pixel accuracy 91.2 on
"COCO-val2017-VOC-labels", 11,029,328 parameters (with the aux head), 10.452
GFLOPS. Trained on a COCO train2017 subset with only the 20 PASCAL VOC
categories (references/segmentation, 520 px), not on VOC: VOC 2012 val
numbers measured with this config will differ (not measured here).
`--input mobilenet_v3_large-8738ca79.pth` (ImageNet, torchvision's
MobileNet_V3_Large_Weights.IMAGENET1K_V1: top-1 74.042) converts the backbone
alone, the head initialised afresh (`--config.init_from` for training).
"""

from configs import family_parts
from configs import parts
from configs import voc_fcn_resnet50


def get_config():
  config = voc_fcn_resnet50.get_config()
  config.model = parts.model(
      family_parts.mobilenet_v3('large', output_stride=16),
      parts.aspp_v3(rates=(12, 24, 36), dropout=0.5, extra_conv=True),
      batch_norm='train',
      **parts.IMAGENET_INPUT)
  return config
