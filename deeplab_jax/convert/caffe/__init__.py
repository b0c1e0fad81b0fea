"""The DeepLab authors' Caffe weights (`.caffemodel`) as flax variables.

    from deeplab_jax.convert import caffe
    layers = caffe.read_caffemodel('train_iter_20000.caffemodel')
    variables = caffe.to_flax(layers, config)   # {'params': ..., 'batch_stats': ...}
    logits = models.build(config).apply(variables, images_uint8_nhwc, train=False)

No Caffe needed: the file is parsed with the schema subset in
`schema.py`. `to_flax` maps layers by their official names, converts
the layouts and checks every leaf against `jax.eval_shape` of
`models.build(config).init`: the result has exactly the model's tree and
shapes, or a `UserError` lists each missing, unexpected or mis-shaped layer
with its Caffe name and our path. `name_table(config)` prints the mapping.
The models take the Caffe input convention (BGR, 0-255, minus the Caffe
mean): the VOC configs' `channel_order='bgr'`, `pixel_std=1`.

Releases and their layer names (the DeepLab v1/v2 prototxts, Kaiming He's
ResNet, VGG's ILSVRC-2014 model):

DeepLab v2 ResNet-101 (`init.caffemodel` COCO-pretrained,
`train_iter_20000.caffemodel`), also ImageNet ResNet-50/101/152 (`fc1000`):
  conv1 / bn_conv1 / scale_conv1          trunk/layer1/conv1/{conv, bn}
  res{s}{b}_branch1   bn.. scale..        trunk/layer{s}/block{i}/shortcut
  res{s}{b}_branch2a  bn{s}{b}_branch2a   trunk/layer{s}/block{i}/reduce
  res{s}{b}_branch2b  scale{s}{b}_...     trunk/layer{s}/block{i}/conv3x3
  res{s}{b}_branch2c                      trunk/layer{s}/block{i}/increase
  fc1_{tag}_c{k} (e.g. fc1_voc12_c0..c3; fc1_c{k} with no tag is accepted)
                                          head/branch{k}_classifier
  Stages s = 2..5 are our layer2..layer5. Block b of block i (1-based):
  'a' for the first; then, as Kaiming He's prototxts name them, letters
  b, c, d, ... except in res3 and res4 of ResNet-101 and -152, which count
  b1, b2, ...: ResNet-101 has res3a, res3b1..res3b3, res4a, res4b1..res4b22,
  res2a..c, res5a..c; ResNet-152 res3b1..b7, res4b1..b35; ResNet-50 only
  letters (res4a..f). `resnet_block_name` is the rule.
  Convolutions: weight (O, I, kh, kw) -> kernel (kh, kw, I, O), no bias in
  the trunk, weight + bias in the classifier. BatchNorm blobs (mean, variance,
  scale_factor): our statistics are blob / scale_factor[0] (0 if the factor
  is 0, as Caffe computes). Caffe's eps is batch_norm_param.eps (default
  1e-5, as the DeepLab prototxts leave it); our BatchNorm uses 1e-5, so a
  file with another eps has the difference added to the variance, which gives
  the same outputs. Scale blobs (gamma, beta) -> bn/{scale, bias}.

DeepLab v1/v2 VGG-16 (LargeFOV, v1 DeepLab 4x4 / 7x7; v2 ASPP-L/-S):
  conv{s}_{i}                             trunk/conv{s}_{i}
  LargeFOV: fc6, fc7, fc8_{tag} (fc8_voc12)   head/branch0_{hidden0, hidden1, classifier}
  ASPP: fc6_{k+1}, fc7_{k+1}, fc8_{tag}_{k+1}  head/branch{k}_{...}
  All convolutions with bias; fc6 is (O, 512, k, k), fc7 / fc8 are 1x1.

ImageNet VGG-16 (`VGG_ILSVRC_16_layers.caffemodel`, V1 format): conv1_1 ..
conv5_3 as above; fc6 (InnerProduct 4096 x 25088 = 512x7x7) and fc7 (4096 x
4096) are subsampled with `decimate.decimate_fc` to the config's fc6 / fc7
(LargeFOV: every 4th output, taps 0, 3, 6), the paper's initialisation.
For a multi-branch (ASPP) config every branch gets the same decimated fc6 /
fc7: our reading of the v2 paper, which does not say how its ASPP-VGG was
initialised. The ImageNet `fc8` is not a DeepLab classifier: it is dropped
and the classifier is absent from the result (see below). A one-branch
DeepLab file (fc6/fc7 without _k) given to a multi-branch config is read the
same way ("init" files): shared fc6/fc7, no classifier.

DeepLab v1 MSc / MSc-LargeFOV (model.multilayer.widths, TheLegendAli/
DeepLab-Context voc12/config/DeepLab-MSc*/train.prototxt): the VGG layers
above (fc8_{tag}: fc8_voc12, DeepLab-MSc's fc8_pascal) and, per branch b in
data, pool1 .. pool4, Convolutions {b}_conv (128 x C x 3 x 3), {b}_fc (128 x
128 x 1 x 1), {b}_ms (classes x 128 x 1 x 1), all with bias ->
multilayer/{b}_conv, _fc, _ms. A file without any of them (the LargeFOV /
DeepLab model the MSc stage fine-tunes from) converts with those leaves
absent (`allow_missing_classifier`, and `convert()` lists them in `absent`):
the front end initialises them.

Multi-scale (MSC) releases: the v2 MSC prototxt runs the network three times
with the layers of the 0.75 and 0.5 scales named with suffixes (`conv1_res075`,
`fc1_voc12_c0_res05`) sharing the scale-1 layers' parameters, so the file
stores identical copies. The plain names are read; a `<name>_res<digits>`
layer whose plain-name twin exists must have the same blob shapes (else an
error) and is dropped; differing values only warn (the scale-1 layer's serve
every scale, as in the PyTorch port's converter). This follows from how
Caffe writes shared parameters; it is not checked against the real files
here.

DeepLab v2 COCO initialisation (`init.caffemodel`, the start of every v2
ResNet result): the ResNet-101 trunk above and one 1x1 classifier
`fc1_coco` (Convolution, weight (91, 2048, 1, 1) + bias (91,): COCO's 91
label indices) instead of the fc1_{tag}_c{k} ASPP layers; the PyTorch port
reads it as `fc1_coco = Conv2d(2048, 91, 1)` (kazuto1011/deeplab-pytorch
3a634f2, libs/models/deeplabv2.py) and drops it when training (its main.py
loads the init with strict=False "to skip ASPP"), as Caffe does (layers are
copied by name; the VOC prototxt has no fc1_coco). Here too it is dropped
by default (listed in `Release.dropped`), the ASPP classifier is absent, and
the front end initialises it. `keep_init_classifier=True` maps it onto
head/branch0_classifier instead, which needs a one-branch 1x1 head
(--config.model.head.rates=1 --config.model.head.kernel_size=1; 91 classes
to keep its class count): the network the file was trained as. Any single
`fc1` / `fc1_{tag}` layer is read the same way.

Classifier: `allow_classifier_mismatch=True` returns a classifier trained for
another number of classes with the file's class count (the kernel's other
dimensions must fit); `allow_missing_classifier=True` accepts files without
one (ImageNet, init files) and leaves those leaves out. The front end
(`deeplab_jax.convert`) decides what to do with either; `convert()` is its
entry point and sets both.

Modules: `reading.py` (the protobuf file -> `Layer`s), `names.py` (layer
names of each model, blob layouts, `name_table`), `releases.py` (which
release a file is, its input convention), `mapping.py` (layers -> variables
and the checks), `schema.py` (the protobuf schema subset).
"""

from deeplab_jax.convert.caffe.mapping import EPS, classifier_paths, convert, to_flax
from deeplab_jax.convert.caffe.names import (MSC_BRANCHES, LayerMap, NameRow, layer_map,
                                             name_table, resnet_block_name, target_shapes)
from deeplab_jax.convert.caffe.reading import Layer, parse_caffemodel, read_caffemodel
from deeplab_jax.convert.caffe.releases import CONVENTION, Release, detect_release

__all__ = ['CONVENTION', 'EPS', 'MSC_BRANCHES', 'Layer', 'LayerMap', 'NameRow', 'Release',
           'classifier_paths', 'convert', 'detect_release', 'layer_map', 'name_table',
           'parse_caffemodel', 'read_caffemodel', 'resnet_block_name', 'target_shapes',
           'to_flax']
