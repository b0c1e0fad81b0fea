"""torchvision's fcn_resnet50: ResNet-50 (torchvision layout, output stride 8) + FCNHead.

    python -m deeplab_jax.convert --input ~/.cache/torch/hub/checkpoints/fcn_resnet50_coco-1167a1af.pth \
        --config configs/voc_fcn_resnet50.py --output weights/fcn_resnet50
    python evaluate.py --config configs/voc_fcn_resnet50.py --workdir weights/fcn_resnet50

The architecture of torchvision/models/segmentation/fcn.py (torchvision 0.28.0):
`resnet50(replace_stride_with_dilation=[False, True, True])` (layer3 and
layer4 dilated: output stride 8, the first block of each keeping the previous
dilation), FCNHead(2048, 21) on the last map, logits upsampled to the image
with F.interpolate(bilinear, align_corners=False); ImageNet normalisation of
RGB inputs. The aux_classifier (FCNHead(1024) on layer3) of the file is dropped.

Published (FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1's meta in fcn.py):
mIoU 60.5, pixel accuracy 91.4 on "COCO-val2017-VOC-labels", 35322218 parameters
(with the aux head). Trained on a subset of COCO train2017 with only the 20
categories that are in PASCAL VOC (torchvision's references/segmentation
recipe, images resized to 520), not on VOC: the VOC 2012 val numbers this
evaluates to will differ (not measured here).
"""

from configs import parts
from configs import voc_largefov


def get_config():
  config = voc_largefov.get_config()
  config.input.scales = (0.5, 0.75, 1.0, 1.25, 1.5)  # Random scale, one of these.
  config.model = parts.model(
      parts.torchvision_resnet(depth=50, output_stride=8),
      parts.fcn_head(),  # 3x3 conv 2048 -> 512, BN, ReLU, dropout 0.1, 1x1 -> classes.
      batch_norm='train',
      **parts.IMAGENET_INPUT)  # RGB, ImageNet mean / std, align_corners False.
  config.optim.base_lr = 0.01  # torchvision's references/segmentation default lr.
  config.crf = parts.crf(voc_largefov.crf_params.RESNET_V2)
  return config
