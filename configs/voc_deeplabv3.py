"""DeepLab v3: ResNet-101 at output stride 16, multi-grid, ASPP with image pooling (VOC 2012).

    python train.py --config configs/voc_deeplabv3.py --workdir runs/voc_deeplabv3 \
        --config.init_from=weights/resnet101_imagenet   # ImageNet ResNet-101 converted
    python evaluate.py --config configs/voc_deeplabv3.py --workdir runs/voc_deeplabv3
    # The paper's evaluation at output stride 8 (rates doubled, section 3.3):
    python evaluate.py --config configs/voc_deeplabv3.py --workdir runs/voc_deeplabv3 \
        --config.model.backbone.output_stride=8 --config.model.head.rates=12,24,36

The recipe of Chen et al. 2017 (arXiv 1706.05587) section 4: ImageNet-pretrained
ResNet-101, "poly" learning rate 0.007 (power 0.9), crop 513, batch 16 with
BatchNorm trained (decay 0.9997 there; flax momentum 0.9 here, as every other
part), output stride 16 in training, random scales 0.5-2.0 and left-right flips,
logits upsampled to the labels rather than labels shrunk ("Upsampling logits",
section 4.1), 30K iterations on train_aug; the block4 (our layer5) multi-grid
(1, 2, 4) (section 3.2) and ASPP rates (6, 12, 18) with image pooling, all 256
wide with BN (section 3.3). Dropout 0.1 after the ASPP projection and the
official code's corner-aligned resizing (tensorflow/models research/deeplab:
model.py). No CRF in the paper (config.crf is there for evaluate.py --crf).

Targets (VOC 2012 val mIoU, ResNet-101, trained at output stride 16): 77.21
evaluated at 16 (Table 5: MG (1, 2, 4) + ASPP (6, 12, 18) + image pooling;
checked against the paper's text as quoted in
github.com/eveningdong/DeepLabV3-Tensorflow/issues/9), 78.51 at 8 (as the v3+
paper's ResNet-101 table re-lists it); 79.45 with multi-scale inputs and
79.77 adding flips (the next table) are as recalled, not found in a source
here. The recipe above as quoted in that repository's issue 11. torchvision's
`deeplabv3_resnet101` checkpoint (a different recipe: rates 12, 24, 36 at
output stride 8, an extra 3x3 conv, COCO subset with VOC classes) reports 67.4
mIoU on its own COCO-val protocol (torchvision/models/segmentation/
deeplabv3.py, DeepLabV3_ResNet101_Weights); its config is configs/voc_deeplabv3_resnet101.py.

The ResNet fields (output_stride, multi_grid, stride_in_1x1, dilation_style)
are models/resnet.py's; there is no separate eval-time output stride: evaluate
at 8 by the override above.
"""

from configs import parts
from configs import voc_largefov
from deeplab_jax.crf import params as crf_params

def resnet101_v3():
  """`config.model.backbone`: ResNet-101 as DeepLab v3 / v3+ use it: stride in
  the 3x3 as TF-slim's resnet_v1 bottleneck (the official backbone), output
  stride 16, layer5's units at rates 2 x (1, 2, 4), the first block of a
  dilated stage at the previous rate (slim's stack_blocks_dense, torchvision's
  _make_layer): torchvision's layout, whose ImageNet weights convert."""
  return parts.torchvision_resnet(depth=101, output_stride=16, multi_grid=(1, 2, 4))


def get_config(head=None):
  return parts.compose(
      dataset=voc_largefov.voc_dataset(),
      input=parts.input_(crop_size=513, eval_size=513, scale_range=(0.5, 2.0),
                         resize='aligned'),  # Random scale 0.5-2.0, corner-aligned resizing.
      model=parts.model(
          resnet101_v3(),
          parts.aspp_v3(rates=(6, 12, 18)) if head is None else head,
          batch_norm='train',  # BN trained at batch 16 (section 4.1).
          align_corners=True),  # The official code's tf.image.resize_bilinear(align_corners=True).
      # No 10x classifier rates in the official code (last_layer_gradient_multiplier 1).
      optim=parts.sgd(base_lr=0.007, weight_decay=1e-4, backbone_bias_lr_mult=1.0,
                      classifier_kernel_lr_mult=1.0, classifier_bias_lr_mult=1.0),
      loss=parts.loss(upsample_logits=True, normalize='batch'),
      crf=parts.crf(crf_params.RESNET_V2),
      batch_size=16, num_train_steps=30_000)
