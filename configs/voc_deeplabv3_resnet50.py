"""torchvision's deeplabv3_resnet50: ResNet-50 (torchvision layout, output stride 8) + DeepLabHead.

    python -m deeplab_jax.convert --input ~/.cache/torch/hub/checkpoints/deeplabv3_resnet50_coco-cd0a2569.pth \
        --config configs/voc_deeplabv3_resnet50.py --output weights/deeplabv3_resnet50
    python evaluate.py --config configs/voc_deeplabv3_resnet50.py --workdir weights/deeplabv3_resnet50

The architecture of torchvision/models/segmentation/deeplabv3.py (torchvision
0.28.0): `resnet50(replace_stride_with_dilation=[False, True, True])` (output
stride 8, no multi-grid), DeepLabHead(2048, 21): ASPP at rates (12, 24, 36)
with image pooling, 256 wide, project dropout 0.5, then an extra 3x3 256 conv
+ BN + ReLU (the paper's v3 has none) and a 1x1 to classes; logits upsampled
with F.interpolate(bilinear, align_corners=False); ImageNet normalisation.
The file's aux_classifier (FCNHead(1024) on layer3) is dropped.

Published (DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1's meta):
mIoU 66.4, pixel accuracy 92.4 on "COCO-val2017-VOC-labels", 42,004,074 parameters (with
the aux head). Trained on a COCO train2017 subset with only the 20 PASCAL VOC
categories (references/segmentation, 520 px), not on VOC: VOC 2012 val
numbers measured with this config will differ (not measured here).
"""

from configs import parts
from configs import voc_fcn_resnet50


def get_config():
  config = voc_fcn_resnet50.get_config()
  config.model.head = parts.aspp_v3(rates=(12, 24, 36), dropout=0.5, extra_conv=True)
  return config
