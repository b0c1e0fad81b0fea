"""DeepLab v3+: v3's ResNet-101 encoder plus the decoder on stride-4 features (VOC 2012).

    python train.py --config configs/voc_deeplabv3plus.py --workdir runs/voc_deeplabv3plus \
        --config.init_from=weights/resnet101_imagenet
    python evaluate.py --config configs/voc_deeplabv3plus.py --workdir runs/voc_deeplabv3plus

Chen et al. 2018 (arXiv 1802.02611): the v3 encoder (configs/voc_deeplabv3.py:
same recipe, output stride 16 in training, ASPP (6, 12, 18) with image
pooling), then the decoder (section 3.1): the ASPP map upsampled bilinearly to
the stride-4 features (the ResNet's layer2: the paper's "Conv2" before striding,
res2's output), concatenated with their 1x1 reduction to 48 channels (Table 1), two
3x3 convs of 256 (Table 2), the 1x1 classifier; output at stride 4.
`--config.model.head.separable=True` makes the ASPP and decoder convs
depthwise-separable (section 3.2; the paper's Xception models).

Targets (VOC 2012 val mIoU, ResNet-101 with the decoder, trained at output
stride 16, the paper's ResNet-101 table): 78.85 evaluated at 16 (also Table 2's
best decoder, Conv2 + [3x3, 256] x 2), 80.22 adding multi-scale inputs and
flips (77.21 without the decoder, as v3); 48 channels best in Table 1 (78.21).
Checked against secondary quotes of the paper (tensorflow/models issue 5116's
title, Media-Smart/vedaseg issue 4, a paper summary), not the PDF; 80.09 with
multi-scale inputs alone is as recalled, not found in a source here.
"""

from configs import parts
from configs import voc_deeplabv3


def get_config():
  return voc_deeplabv3.get_config(head=parts.deeplabv3plus(
      rates=(6, 12, 18), low_level_width=48, decoder_width=256,
      reads=('layer2', 'out')))  # layer2: the stride-4 map (torchvision's 'layer1').
