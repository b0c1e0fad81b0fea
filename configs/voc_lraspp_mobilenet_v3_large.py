"""torchvision's lraspp_mobilenet_v3_large: MobileNetV3-Large (output stride 16) + Lite R-ASPP.

    python -m deeplab_jax.convert \
        --input ~/.cache/torch/hub/checkpoints/lraspp_mobilenet_v3_large-d234d4ea.pth \
        --config configs/voc_lraspp_mobilenet_v3_large.py --output weights/lraspp_mnv3
    python evaluate.py --config configs/voc_lraspp_mobilenet_v3_large.py --workdir weights/lraspp_mnv3

The architecture of torchvision/models/segmentation/lraspp.py (torchvision
0.28.0): `mobilenet_v3_large(dilated=True).features`, LRASPPHead on its
stride-8 map (features.4, 40 channels) and its last (960 channels, stride
16), 128 wide; stride-8 logits upsampled with F.interpolate(bilinear,
align_corners=False); ImageNet normalisation. The head is the MobileNetV3
paper's (arXiv 1905.02244, section 6.4) with global pooling.

Published (LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1's meta
in lraspp.py): mIoU 57.9, pixel accuracy 91.2 on "COCO-val2017-VOC-labels",
3,221,538 parameters, 2.086 GFLOPS. Trained on a COCO train2017 subset with
only the 20 PASCAL VOC categories (references/segmentation, 520 px), not on
VOC: VOC 2012 val numbers measured with this config will differ (not
measured here).
"""

from configs import family_parts
from configs import parts
from configs import voc_fcn_resnet50


def get_config():
  config = voc_fcn_resnet50.get_config()
  config.model = parts.model(
      family_parts.mobilenet_v3('large', output_stride=16),
      family_parts.lraspp(width=128, reads=('block4', 'out')),
      batch_norm='train',
      **parts.IMAGENET_INPUT)
  return config
