"""torchvision's deeplabv3_resnet101: ResNet-101 (torchvision layout, output stride 8) + DeepLabHead.

    python -m deeplab_jax.convert --input ~/.cache/torch/hub/checkpoints/deeplabv3_resnet101_coco-586e9e4e.pth \
        --config configs/voc_deeplabv3_resnet101.py --output weights/deeplabv3_resnet101
    python evaluate.py --config configs/voc_deeplabv3_resnet101.py --workdir weights/deeplabv3_resnet101

The architecture of torchvision/models/segmentation/deeplabv3.py (torchvision
0.28.0): `resnet101(replace_stride_with_dilation=[False, True, True])` (output
stride 8, no multi-grid), DeepLabHead(2048, 21): ASPP at rates (12, 24, 36)
with image pooling, 256 wide, project dropout 0.5, then an extra 3x3 256 conv
+ BN + ReLU (the paper's v3 has none) and a 1x1 to classes; logits upsampled
with F.interpolate(bilinear, align_corners=False); ImageNet normalisation.
The file's aux_classifier (FCNHead(1024) on layer3) is dropped.

Published (DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1's meta):
mIoU 67.4, pixel accuracy 92.4 on "COCO-val2017-VOC-labels", 60,996,202 parameters (with
the aux head). Trained on a COCO train2017 subset with only the 20 PASCAL VOC
categories (references/segmentation, 520 px), not on VOC: VOC 2012 val
numbers measured with this config will differ (not measured here).
"""

from configs import parts
from configs import voc_fcn_resnet101


def get_config():
  config = voc_fcn_resnet101.get_config()
  config.model.head = parts.aspp_v3(rates=(12, 24, 36), dropout=0.5, extra_conv=True)
  return config
