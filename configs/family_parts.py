"""The parts of the families beside DeepLab's: FCN, U-Net, MobileNetV3 with LR-ASPP.

    from configs import family_parts, parts
    config.model = parts.model(family_parts.mobilenet_v3(), family_parts.lraspp(),
                               **parts.IMAGENET_INPUT)

Sections in parts.py's convention (each field defined and explained once,
a section holding only its part's fields); parts.py has the shared sections
(data, input, model, optim, loss, eval, CRF) and DeepLab's backbones and
heads (VGG-16, ResNet, ASPP, v3's ASPP, v3+'s decoder, torchvision's FCNHead).
"""

from __future__ import annotations

from configs.parts import section, sgd


# ------------------------------------------------------------ FCN ----

FCN_INPUT = dict(
    channel_order='bgr',  # The FCN caffemodels take BGR ...
    # ... 0-255 minus this mean (voc-fcn*/net.py's `mean`, BGR), no scaling.
    pixel_mean=(104.00699, 116.66877, 122.67892),
    pixel_std=(1.0, 1.0, 1.0),
    align_corners=True)  # Unused by FCN's stride-1 output; Caffe's convention.


def vgg16_fcn(base_width=64, fc_width=4096, dropout=0.5):
  """`config.model.backbone` 'vgg16_fcn' (models/fcn_vgg.py): FCN's VGG-16, stride 32."""
  return section(
      name='vgg16_fcn',
      base_width=base_width,  # conv1_1's width, the rest scale (release: 64).
      fc_width=fc_width,  # fc6 (7x7 valid) and fc7 (1x1) channels (release: 4096).
      dropout=dropout)  # After fc6 and fc7 (release: 0.5).


def fcn(skips=('pool4', 'pool3'), skip_scales=()):
  """`config.model.head` 'fcn' (models/fcn.py): score_fr, skips, bilinear upscore, crops."""
  return section(
      name='fcn',
      # Skip streams fused in turn: () FCN-32s, ('pool4',) 16s, ('pool4', 'pool3') 8s.
      skips=tuple(skips),
      # Caffe Scale factors before each skip's score layer (at-once FCN-8s:
      # 0.01, 0.0001, frozen); () = none, as the staged nets.
      skip_scales=tuple(skip_scales))


# Caffe's lr_mult 0 on the Deconvolutions (all four FCN nets) and the at-once
# Scale layers: fixed bilinear upsampling, fixed skip scales (optim.lr_mults rows).
FCN_FROZEN = (('head/upscore', 0, 0), ('head/scale_', 0, 0))


def fcn_sgd(base_lr):
  """`config.optim` of the FCN releases (voc-fcn*/solver.prototxt): lr_policy
  "fixed" (a 'step' schedule with gamma 1), momentum 0.99, decay 5e-4, every
  layer at lr_mult 1 / 2 (weights / biases), the upsampling and scales frozen."""
  return sgd(base_lr, schedule='step', step_gamma=1.0, momentum=0.99, weight_decay=5e-4,
             backbone_bias_lr_mult=2.0, classifier_kernel_lr_mult=1.0,
             classifier_bias_lr_mult=2.0, lr_mults=FCN_FROZEN)


# ------------------------------------------------------------ U-Net ----
# models/unet.py (Ronneberger et al. 2015). The encoder and the decoder take
# the same `depth` and `padding`; `unet()` gives both sections at once.

def unet_encoder(depth=4, base_width=64, padding='same', mirror=True):
  """`config.model.backbone` 'unet_encoder': U-Net's contracting path."""
  return section(
      name='unet_encoder',
      depth=depth,  # 2x2 max pools (paper: 4); features at strides 1 .. 2^depth.
      base_width=base_width,  # Level 0's width, doubling per level (paper: 64 -> 1024).
      # 'same' (3x3 convs padded: output = input size, any size) or 'valid'
      # (the paper's unpadded convs: 572 -> 388 at depth 4).
      padding=padding,
      # 'valid' only: extend the input by mirroring (the paper's overlap-tile)
      # so the output is the input's size, as training and evaluation need;
      # False: the raw network (valid sizes only, output smaller, centred).
      mirror=mirror)


def unet_decoder(depth=4, padding='same'):
  """`config.model.head` 'unet_decoder': U-Net's expanding path and 1x1 classifier."""
  return section(
      name='unet_decoder',
      depth=depth,  # As the encoder's.
      padding=padding)  # As the encoder's.


def unet(depth=4, base_width=64, padding='same', mirror=True):
  """(backbone, head) sections of one U-Net, for `model(*unet(...))`."""
  return (unet_encoder(depth, base_width, padding, mirror), unet_decoder(depth, padding))


# --------------------------------------------------- MobileNetV3, LR-ASPP ----

def mobilenet_v3(variant='large', width_mult=1.0, reduced_tail=False, output_stride=16):
  """`config.model.backbone` 'mobilenet_v3' (models/mobilenet.py): torchvision's MobileNetV3."""
  return section(
      name='mobilenet_v3',
      variant=variant,  # 'large' (15 blocks, 960 wide at the end) or 'small' (11, 576).
      width_mult=width_mult,  # Every width times this, rounded to a multiple of 8 (1.0).
      reduced_tail=reduced_tail,  # Halve the last stage's widths (torchvision's option).
      # 16: the last stage dilated (rate 2), torchvision's segmentation trunk; 32: ImageNet's.
      output_stride=output_stride)


def lraspp(width=128, reads=('block4', 'out')):
  """`config.model.head` 'lraspp' (models/lraspp.py): MobileNetV3's Lite R-ASPP."""
  return section(
      name='lraspp',
      width=width,  # The 1x1 branch's and the pooled gate's width (torchvision: 128).
      # (low, high) feature names: stride 8 and the last map (Large: block4, Small: block2).
      reads=tuple(reads))
