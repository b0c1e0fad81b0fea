"""torchvision's fcn_resnet101: ResNet-101 (torchvision layout, output stride 8) + FCNHead.

    python -m deeplab_jax.convert --input ~/.cache/torch/hub/checkpoints/fcn_resnet101_coco-7ecb50ca.pth \
        --config configs/voc_fcn_resnet101.py --output weights/fcn_resnet101
    python evaluate.py --config configs/voc_fcn_resnet101.py --workdir weights/fcn_resnet101

The architecture of torchvision/models/segmentation/fcn.py (torchvision 0.28.0):
`resnet101(replace_stride_with_dilation=[False, True, True])` (layer3 and
layer4 dilated: output stride 8, the first block of each keeping the previous
dilation), FCNHead(2048, 21) on the last map, logits upsampled to the image
with F.interpolate(bilinear, align_corners=False); ImageNet normalisation of
RGB inputs. The aux_classifier (FCNHead(1024) on layer3) of the file is dropped.

Published (FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1's meta in fcn.py):
mIoU 63.7, pixel accuracy 91.9 on "COCO-val2017-VOC-labels", 54314346 parameters
(with the aux head). Trained on a subset of COCO train2017 with only the 20
categories that are in PASCAL VOC (torchvision's references/segmentation
recipe, images resized to 520), not on VOC: the VOC 2012 val numbers this
evaluates to will differ (not measured here).
"""

from configs import voc_fcn_resnet50


def get_config():
  config = voc_fcn_resnet50.get_config()  # The same network, ...
  config.model.backbone.depth = 101  # ... 23 blocks in layer4.
  return config
