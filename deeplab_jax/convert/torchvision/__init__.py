"""torchvision's checkpoints as flax variables: segmentation models, ImageNet ResNets and MobileNetV3s.

    python -m deeplab_jax.convert --input fcn_resnet50_coco-1167a1af.pth \
        --config configs/voc_fcn_resnet50.py --output weights/fcn_resnet50
    python -m deeplab_jax.convert --input resnet50-0676ba61.pth \
        --config configs/voc_fcn_resnet50.py --output weights/r50_imagenet  # backbone only

Sources, told apart by their keys (`detect`):
  SEGMENTATION  `backbone.*` + `classifier.*` (+ `aux_classifier.*`, dropped and
                reported): fcn_resnet50/101 (head 'fcn_head'), deeplabv3_resnet50/101
                and deeplabv3_mobilenet_v3_large (head 'aspp_v3'),
                lraspp_mobilenet_v3_large (head 'lraspp').
  IMAGENET      `conv1.*`, `layer1.*`, ..., `fc.*` (dropped): the backbone for
                `--config.init_from`; the head is absent and initialised afresh.
  MOBILENET_IMAGENET  `features.*`, `classifier.*` (dropped): mobilenet_v3_large /
                small, the backbone alone as IMAGENET.
The file's backbone (ResNet or MobileNetV3) must be the config's.
MobileNetV3 keys (torchvision/models/mobilenetv3.py): features.0 -> trunk/stem,
features.<i>.block.<j> -> trunk/block<i>/{expand, depthwise, se, project} in
turn (those the block has), features.<n+1> -> trunk/last; `backbone.` for
`features.` in segmentation files; LRASPPHead's cbr.{0,1} / scale.1 /
{low,high}_classifier -> head/cbr/{conv,bn} / head/scale / the same names.
ResNet keys (torchvision/models/resnet.py, segmentation/fcn.py) -> our paths:
  conv1 / bn1                         trunk/layer1/conv1/{conv,bn}
  layer{s}.{j}.conv{1,2,3} / bn{1,2,3}  trunk/layer{s+1}/block{j+1}/{reduce,conv3x3,increase}
  layer{s}.0.downsample.{0,1}         trunk/layer{s+1}/block1/shortcut/{conv,bn}
  classifier.{0,1} / classifier.4     head/conv3x3/{conv,bn} / head/classifier (FCNHead)
  weight -> kernel (OIHW -> HWIO) / scale, bias, running_mean -> mean, running_var -> var.
The backbone must be torchvision's layout (`parts.torchvision_resnet`:
stride_in_1x1=False; its floor-mode stem and dilation style for equal logits).
"""

from deeplab_jax.convert.torchvision.mapping import (IMAGENET, MOBILENET_IMAGENET, SEGMENTATION,
                                                     SOURCES, convert, detect, expected_keys,
                                                     is_torchvision)

__all__ = ['IMAGENET', 'MOBILENET_IMAGENET', 'SEGMENTATION', 'SOURCES', 'convert', 'detect',
           'expected_keys', 'is_torchvision']
