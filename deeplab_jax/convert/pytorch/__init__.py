"""PyTorch checkpoints (`torch.save` files) as flax variables for our models.

    from deeplab_jax.convert import pytorch
    state = pytorch.read_state_dict('deeplabv2_resnet101_msc-vocaug-20000.pth')
    converted = pytorch.to_flax(state, config)   # config: configs/voc_aspp.py
    logits = models.build(config).apply(converted.variables, images, train=False)

Two sources, told apart by their keys:

`deeplab_pytorch_resnet`: the PyTorch DeepLab v2 port (kazuto1011/deeplab-pytorch)
  ResNet-101 (or 50/152) + ASPP, with or without its MSC wrapper's `base.`
  prefix. Its names are ours (`models/resnet.py`), so the map is one to one:

    layer1.conv1.conv.weight              params/trunk/layer1/conv1/conv/kernel
    layer1.conv1.bn.weight / .bias        params/trunk/layer1/conv1/bn/scale / bias
    layer1.conv1.bn.running_mean / _var   batch_stats/trunk/layer1/conv1/bn/mean / var
    layer{2-5}.block{j}.{reduce,conv3x3,increase,shortcut}.{conv,bn}.*   the same below
    aspp.c{i}.weight / .bias              params/head/branch{i}_classifier/kernel / bias

  Config: configs/voc_aspp.py (depth, width and `head.rates` must match the
  file). Input convention: the port kept Caffe's (BGR, 0-255 minus
  (104.008, 116.669, 122.675), no scaling), which the VOC configs carry. The
  port resizes with `interpolate(scale_factor=...)`, i.e.
  `model.align_corners=False`; the Caffe models and the VOC configs use True.

`torchvision_vgg16`: torchvision's ImageNet VGG-16 (`features.*`, `classifier.*`)
  for the VGG configs (voc_largefov.py with its v1 overrides, voc_vgg_aspp.py):

    features.{0,2 | 5,7 | 10,12,14 | 17,19,21 | 24,26,28}   conv1_1 .. conv5_3
    classifier.0 (4096 x 25088 = 512*7*7)  fc6, decimated (`decimate.decimate_fc`)
                                           to model.head.hidden[0] outputs and a
                                           head_kernel_size kernel -> every
                                           params/head/branch{i}_hidden0
    classifier.3 (4096 x 4096)             fc7, rows and columns decimated ->
                                           every params/head/branch{i}_hidden1
    classifier.6 (1000 x 4096)             ImageNet's classifier: not used

  Every ASPP branch starts from the same fc6 / fc7, as the paper does. The
  classifiers (`branch{i}_classifier`) and v1's MSc layers (`multilayer/*`)
  are not in the file: they are reported `absent` for the caller to
  initialise. Input convention: torchvision's VGG takes RGB scaled to 0-1
  and normalised by the ImageNet mean / std, i.e. for our 0-255 inputs
  `channel_order='rgb'`, `pixel_mean=(123.675, 116.28, 103.53)`,
  `pixel_std=(58.395, 57.12, 57.375)`; the VOC configs carry Caffe's BGR
  convention instead, so override them:

    --config.model.channel_order=rgb --config.model.pixel_mean=123.675,116.28,103.53
    --config.model.pixel_std=58.395,57.12,57.375

  (`input_convention(source)` gives these values, `convention_differences`
  compares them with a config.) torchvision's ResNets are not accepted: their
  stride sits in the 3x3 conv, not the 1x1 of the Caffe layout used here.

Contract of `to_flax(state, config)` -> `Converted`:
  `variables`: {'params': ..., 'batch_stats': ...} (no 'batch_stats' for
      VGG, as `models.build(config).init` has none) nested dicts of float32
      numpy arrays holding every leaf of the model, with exactly its shape,
      except the two cases below. Checked leaf by leaf against
      `jax.eval_shape` of the model's init.
  `absent`: frozenset of '/'-joined paths ('params/head/branch0_classifier/
      kernel') the file lacks by design; those leaves are not in `variables`
      and the caller initialises them.
  `classifier_mismatch`: True when the file's classifier scores another
      number of classes (`file_num_classes`) than config.dataset.num_classes.
      Only with `to_flax(..., allow_classifier_mismatch=True)` (otherwise a
      UserError); `variables` then holds the file's classifier leaves at the
      `classifier_paths` with the file's shapes, and the caller re-initialises
      them (when asked to) or stops.
  `classifier_paths`, `dropped` (file keys left out on purpose), `source`,
      `description`: for the caller's messages and records.
Anything else (a key missing, unexpected or of another shape) is a UserError
naming the PyTorch key, our path and both shapes. `convert(state, config)` is
`to_flax` for the front end (`deeplab_jax.convert.read`), which makes the
class-count decision itself.

Modules: `reading.py` (`torch.save` files -> {key: array}), `sources.py`
(which source a state_dict is, its input convention), `mapping.py` (keys ->
our paths, `to_flax` and its checks).
"""

from deeplab_jax.convert.pytorch.mapping import Target, convert, expected_keys, to_flax
from deeplab_jax.convert.pytorch.reading import STATE_DICT_KEYS, read_state_dict, strip_prefix
from deeplab_jax.convert.pytorch.sources import (RESNET, SOURCES, VGG16, convention_differences,
                                                 detect_source, input_convention)

__all__ = ['RESNET', 'SOURCES', 'STATE_DICT_KEYS', 'Target', 'VGG16', 'convention_differences',
           'convert', 'detect_source', 'expected_keys', 'input_convention', 'read_state_dict',
           'strip_prefix', 'to_flax']
