"""The parts every config is composed from; each field is defined (and explained) once here.

    config = parts.compose(
        dataset=parts.voc_dataset(), input=parts.input_(crop_size=321),
        model=parts.model(parts.vgg16(pool5a=True),
                          parts.aspp(rates=(12,), hidden=(1024, 1024), dropout=0.5),
                          **parts.CAFFE_INPUT),
        optim=parts.sgd(base_lr=1e-3), loss=parts.loss(), crf=parts.crf(crf_params.VGG_LARGEFOV),
        batch_size=10, num_train_steps=20_000)

A paper config (configs/voc_largefov.py, ...) is such a call with the
release's numbers; its docstring gives the command and the published result.
Each part section holds only its own fields: `model.backbone` those of the
backbone it names (models/registry.py checks), `model.multilayer` exists
only where v1's MSc is used. Override any field on the command line:
`--config.model.head.rates=6,12,18,24`, `--config.eval.flip=True`,
`--config.crf.w1=5`. Tests shrink configs with configs/tiny.py.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from deeplab_jax.models import vgg

placeholder = ml_collections.config_dict.placeholder

IMAGENET_INPUT = dict(
    channel_order='rgb',  # 'bgr' for Caffe weights.
    pixel_mean=(123.675, 116.28, 103.53),  # Subtracted, in channel_order.
    pixel_std=(58.395, 57.12, 57.375),  # Divided by (Caffe: 1, 1, 1).
    align_corners=False)  # Bilinear resizing convention (Caffe: True).
CAFFE_INPUT = dict(
    channel_order='bgr',  # Caffe weights take BGR ...
    pixel_mean=(104.008, 116.669, 122.675),  # ... 0-255 minus the Caffe mean (BGR).
    pixel_std=(1.0, 1.0, 1.0),  # No scaling.
    align_corners=True)  # Caffe's Interp convention for every bilinear resize.


def section(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


# ------------------------------------------------------------- data ----

def dataset(name, num_classes, class_names, train_split='train', eval_split='val',
            builder_config='', ignore_label=255):
  """`config.dataset`: which data (deeplab_jax/data/datasets.py's registry or TFDS)."""
  d = ml_collections.ConfigDict()
  d.name = name  # Registered dataset or TFDS name; built on first use.
  d.builder_config = builder_config  # The builder's variant ('' = none).
  d.data_dir = placeholder(str)  # TFDS dir; None = ~/tensorflow_datasets.
  # Downloaded archives (VOC, Cityscapes); None = <data_dir>/downloads/manual.
  d.manual_dir = placeholder(str)
  d.folder = placeholder(str)  # name 'segmentation_folder' only: your data.
  d.train_split = train_split
  d.eval_split = eval_split  # Never trained on.
  d.num_classes = num_classes
  d.class_names = tuple(class_names)
  d.ignore_label = ignore_label  # Void pixels: no loss, not scored.
  return d


def input_(crop_size, eval_size, scales=(), scale_range=(1.0, 1.0), flip=True,
           resize='caffe', shuffle_buffer=2048, cache=False):
  """`config.input`: the training crops and how eval images are padded."""
  i = ml_collections.ConfigDict()
  i.crop_size = crop_size  # Square training crop (paper: 321).
  i.scales = tuple(scales)  # Discrete random scales (paper: 0.5..1.5); () = use scale_range.
  i.scale_range = tuple(scale_range)  # Continuous random scale when `scales` is empty.
  i.flip = flip  # Random horizontal flip.
  # Training resize: 'caffe' (Caffe's data layer: truncated size, OpenCV INTER_LINEAR /
  # INTER_NEAREST, padding exactly 0 at the input) or 'aligned' (corner-aligned, rounded size).
  i.resize = resize
  i.shuffle_buffer = shuffle_buffer  # Examples in the shuffle buffer.
  i.cache = cache  # Keep decoded training images in memory (small datasets).
  # Eval images are padded to this square, or (height, width) (>= largest image).
  i.eval_size = eval_size
  return i


# ------------------------------------------------------------ model ----

def small(widths=(16, 32, 64), atrous_widths=(64, 64), atrous_rates=(2, 4), residual=False):
  """`config.model.backbone` 'small' (models/small.py): narrow, for CPUs and tests."""
  return section(
      name='small',
      widths=tuple(widths),  # Stride-2 stage widths (strides 2, 4, 8).
      atrous_widths=tuple(atrous_widths),  # Atrous stages after output stride 8.
      atrous_rates=tuple(atrous_rates),  # Their rates (field of view grows, stride stays 8).
      residual=residual)  # ResNet basic blocks after the first stage.


def vgg16(pools=vgg.LARGEFOV_POOLS, eval_pools=(), pool5a=False, base_width=64):
  """`config.model.backbone` 'vgg16' (models/vgg.py): DeepLab's VGG-16, output stride 8."""
  return section(
      name='vgg16',
      # pool1 .. pool5 as (kernel, stride, pad), the release's (vgg.LARGEFOV_POOLS;
      # v1 DeepLab vgg.V1_POOLS); eval_pools the test prototxt's where it
      # differs (v1 DeepLab: vgg.V1_EVAL_POOLS), () = the same.
      pools=tuple(pools),
      eval_pools=tuple(eval_pools),
      pool5a=pool5a,  # LargeFOV's 3x3 average pool before fc6.
      base_width=base_width)  # conv1_1's width, the rest scale (paper: 64).


def resnet(depth=101, base_width=64, stride_in_1x1=True, output_stride=8, multi_grid=(),
           dilation_style='deeplab_v2', stem_ceil_mode=True):
  """`config.model.backbone` 'resnet' (models/resnet.py): v2's Caffe ResNet at output
  stride 8 by default; `torchvision_resnet` gives torchvision's layout."""
  return section(
      name='resnet',
      depth=depth,  # 50, 101, 152 (14, 26: one, two blocks a stage, for tests).
      base_width=base_width,  # Stem width, the stages scale (paper: 64).
      # Where a stage's stride sits: the first 1x1 (True: Caffe, DeepLab v2) or
      # the 3x3 (False: torchvision's ResNet V1.5).
      stride_in_1x1=stride_in_1x1,
      output_stride=output_stride,  # 8, 16 or 32: the last stages' strides become atrous rates.
      multi_grid=tuple(multi_grid),  # Unit rates of layer5's blocks (v3: (1, 2, 4)); () = 1s.
      # A dilated stage's rates: 'deeplab_v2' (every block at the stage's rate)
      # or 'torchvision' (the first block keeps the previous stage's rate).
      dilation_style=dilation_style,
      stem_ceil_mode=stem_ceil_mode)  # Stem max pool: Caffe's ceil mode; False: PyTorch's floor.


def torchvision_resnet(depth=50, output_stride=8, multi_grid=()):
  """`config.model.backbone` 'resnet' in torchvision's layout (torchvision/models/
  resnet.py): stride in the 3x3, floor-mode stem pool, `_make_layer`'s dilation."""
  return resnet(depth, stride_in_1x1=False, output_stride=output_stride,
                multi_grid=multi_grid, dilation_style='torchvision', stem_ceil_mode=False)


def aspp(rates, hidden=(), kernel_size=3, dropout=0.0):
  """`config.model.head` 'aspp' (models/aspp.py): branches summed; LargeFOV is one rate."""
  return section(
      name='aspp',
      rates=tuple(rates),  # One branch per rate: (12,) LargeFOV, (6, 12, 18, 24) ASPP-L.
      hidden=tuple(hidden),  # Per-branch hidden widths: VGG's fc6, fc7 (1024, 1024); () none.
      kernel_size=kernel_size,  # fc6 kernel (v1 DeepLab: 4, DeepLab-7x7: 7).
      dropout=dropout)  # After each hidden layer (paper: 0.5).


def fcn_head(width=None, dropout=0.1):
  """`config.model.head` 'fcn_head' (models/fcn_head.py): torchvision's FCNHead."""
  return section(
      name='fcn_head',
      width=placeholder(int) if width is None else width,  # 3x3 conv width; None = input / 4.
      dropout=dropout)  # Before the classifier (torchvision: 0.1).


# DeepLab v3 / v3+ heads.
def aspp_v3(rates=(6, 12, 18), width=256, image_pooling=True, dropout=0.1,
            extra_conv=False, separable=False, reads=('out',)):
  """`config.model.head` 'aspp_v3' (models/aspp_v3.py): DeepLab v3's ASPP, concatenated."""
  return section(
      name='aspp_v3',
      # 3x3 atrous branches beside the 1x1 one: (6, 12, 18) at output stride 16,
      # (12, 24, 36) at 8 (v3 paper section 3.3; torchvision's DeepLabHead: 12, 24, 36).
      rates=tuple(rates),
      width=width,  # Filters of every branch and of the projection (paper: 256).
      image_pooling=image_pooling,  # The global-average-pooled branch (v3's image-level features).
      dropout=dropout,  # After the projection (official code: 0.1; torchvision: 0.5).
      extra_conv=extra_conv,  # torchvision's 3x3 256 conv + BN + ReLU before the classifier.
      separable=separable,  # Depthwise-separable atrous branches (v3+).
      reads=tuple(reads))  # The one feature map the ASPP reads (the backbone's last).


def deeplabv3plus(rates=(6, 12, 18), width=256, image_pooling=True, dropout=0.1,
                  separable=False, low_level_width=48, decoder_width=256,
                  align_corners=True, reads=('layer2', 'out')):
  """`config.model.head` 'deeplabv3plus' (models/decoder.py): v3's ASPP + v3+'s decoder."""
  return section(
      name='deeplabv3plus',
      rates=tuple(rates),  # ASPP atrous rates, as aspp_v3 (output stride 16: 6, 12, 18).
      width=width,  # ASPP width (256).
      image_pooling=image_pooling,  # ASPP's image-level branch.
      dropout=dropout,  # After the ASPP projection (official code: 0.1).
      separable=separable,  # Depthwise-separable ASPP branches and decoder convs (v3+'s best).
      low_level_width=low_level_width,  # 1x1 reduction of the low-level map (v3+ Table 1: 48).
      decoder_width=decoder_width,  # Two 3x3 convs after the concatenation (Table 2: 256).
      # Upsampling of the ASPP map to the low-level map's size: corners aligned
      # as the official code's resize_bilinear (True), or half-pixel (False).
      align_corners=align_corners,
      # (low-level, ASPP input) feature names: the stride-4 map and the backbone's last
      # (ResNet: layer2 at stride 4, torchvision's 'layer1').
      reads=tuple(reads))


def multilayer(widths=(128, 128), dropout=0.5):
  """`config.model.multilayer` (models/multilayer.py): v1 MSc's MLPs on image and pool1-4."""
  return section(
      widths=tuple(widths),  # {b}_conv, {b}_fc widths (release: 128, 128).
      dropout=dropout)  # After each (release: 0.5).


def model(backbone, head, multilayer=None, input_scales=(1.0,), batch_norm='train',
          atrous_impl='auto', dtype='float32', **input_convention):
  """`config.model`: backbone and head sections, MSC, the layers' settings, the CRF layer.

  `input_convention`: IMAGENET_INPUT (default) or CAFFE_INPUT's fields.
  """
  m = ml_collections.ConfigDict()
  m.backbone = backbone
  m.head = head
  if multilayer is not None:
    m.multilayer = multilayer
  m.input_scales = tuple(input_scales)  # v2 MSC: (1.0, 0.75, 0.5), max-fused.
  m.batch_norm = batch_norm  # 'train' (global-batch stats), 'frozen' or 'none'.
  m.atrous_impl = atrous_impl  # 'auto', 'dilation', 'space_to_batch' or 'taps' (same numbers).
  m.dtype = dtype  # Activation dtype: 'float32' or 'bfloat16' (GPU/TPU).
  for key, value in {**IMAGENET_INPUT, **input_convention}.items():
    if key not in IMAGENET_INPUT:
      raise TypeError(f'model() got an unexpected field {key!r}')
    m[key] = tuple(value) if isinstance(value, tuple) else value
  # Dense CRF as the last layer, trained through (models/crf_layer.py): the
  # output becomes the CRF's log Q at image size, for loss and eval alike.
  # Its kernel weights w1, w2 are learned (params/crf/*, started from
  # config.crf); config.crf's sigmas and normalization are used as they are.
  m.crf_layer = False  # True: train / evaluate through the CRF (slower steps).
  m.crf_layer_iterations = 5  # Mean-field steps unrolled in the layer.
  return m


# --------------------------------------------------------- training ----

def sgd(base_lr, schedule='poly', step_every=2000, step_gamma=0.1, power=0.9,
        warmup_steps=0, momentum=0.9, weight_decay=5e-4, backbone_bias_lr_mult=2.0,
        classifier_kernel_lr_mult=10.0, classifier_bias_lr_mult=20.0, lr_mults=()):
  """`config.optim` (deeplab_jax/optim.py); the defaults are the Caffe releases'."""
  o = ml_collections.ConfigDict()
  o.base_lr = base_lr  # Scaled by optim.schedule.
  # 'poly' (v2): base_lr * (1 - step / steps) ** power; 'step' (v1):
  # base_lr * step_gamma ** (step // step_every).
  o.schedule = schedule
  o.step_every = step_every  # 'step' only.
  o.step_gamma = step_gamma  # 'step' only.
  o.power = power
  o.warmup_steps = warmup_steps  # Linear warm-up (paper: 0).
  o.momentum = momentum
  o.weight_decay = weight_decay  # On conv kernels only (paper: 5e-4).
  o.backbone_bias_lr_mult = backbone_bias_lr_mult  # Other convs' biases (Caffe's lr_mult: 2).
  # The classifier layers (as the model's parts declare them: the ASPP
  # branches' last convs, VGG's fc8): paper 10x weights, 20x biases.
  o.classifier_kernel_lr_mult = classifier_kernel_lr_mult
  o.classifier_bias_lr_mult = classifier_bias_lr_mult
  # Per-layer rates (Caffe's blobs_lr pairs): rows (regex on the module path,
  # kernel_mult, bias_mult), first match wins, 0 = frozen; () = the groups
  # above (configs/voc_msc_largefov.py freezes trunk and head this way).
  o.lr_mults = tuple(lr_mults)
  return o


def loss(upsample_logits=False, normalize='image', label_offset=0):
  """`config.loss` (deeplab_jax/losses/; docs/own_data.md for which to use)."""
  l = ml_collections.ConfigDict()
  # True: logits upsampled to the label size; False: labels shrunk
  # (nearest) to the logits' size, as the paper trains.
  l.upsample_logits = upsample_logits
  # 'batch': one mean over the batch's valid pixels; 'image': each image's
  # mean, averaged over images (Caffe's batch 1 x iter_size 10, the VOC
  # configs'; the PyTorch port's 'batch' per micro-batch of 5); 'sum': FCN's
  # undivided sum. Dice and Lovasz: losses/objective.py.
  l.normalize = normalize
  # Pixels dropped at the top and left of the labels before they are shrunk
  # to the score map (loss.upsample_logits False, corners aligned): Caffe's
  # label_shrink `pad_beg`, negated (v1 DeepLab: 1, its score cell j sits on
  # pixel 8 j + 1; the other releases: 0).
  l.label_offset = label_offset
  # Class weights of the cross-entropy, one per class in index order (e.g.
  # --config.loss.class_weights=1,4 for a rare foreground); () = all 1.
  l.class_weights = ()
  # Or weights computed from the training split's pixel counts at the start
  # of training (saved in <workdir>/class_weights.json): 'inverse',
  # 'inverse_sqrt' (scaled so a training pixel weighs 1 on average) or
  # 'median_frequency' (Eigen & Fergus 2015); '' = none.
  l.class_balance = ''
  # OHEM: train on each image's hard pixels only, those whose probability of
  # their true class is below ohem_threshold, and at least its ohem_min_kept
  # hardest (mmsegmentation's OHEMPixelSampler rule, per image).
  l.ohem = False
  l.ohem_threshold = 0.7
  l.ohem_min_kept = 10_000
  # Weights of the loss's terms: cross-entropy, soft Dice and Lovasz-softmax
  # (for binary and small-object tasks, e.g. ce 1 + dice 1); Dice and
  # Lovasz average the classes present in the ground truth.
  l.ce_weight = 1.0
  l.dice_weight = 0.0
  l.lovasz_weight = 0.0
  return l


# ------------------------------------------------------- evaluation ----

def evaluation():
  """`config.eval`: how evaluate.py / predict.py infer, score and write."""
  e = ml_collections.ConfigDict()
  # Inference (deeplab_jax/inference.py). Logits are upsampled bilinearly to
  # the image size (model.align_corners' convention) before argmax and CRF.
  e.mode = 'whole'  # 'whole': each image padded to input.eval_size, one pass; 'sliding': windows.
  e.window = (513, 513)  # mode 'sliding': window (height, width), pixels.
  e.stride = (342, 342)  # mode 'sliding': step between windows; overlapping logits averaged.
  e.scales = (1.0,)  # Test-time scales, logits averaged (not the paper's protocol: its MSC
  # is model.input_scales = 1, 0.75, 0.5 inside the network, max-fused; more scales add on top).
  e.flip = False  # Also infer the mirrored image and average.
  # Pixels cropped at the top / left of the score map zoomed x8 (corners
  # aligned) before it meets the image: the test prototxt's fc8_crop
  # `pad_beg`, negated (v1 DeepLab: 7); 0 = a plain resize to the image size.
  e.score_offset = 0
  # Dense CRF after the network (config.crf): scores before AND after in one run.
  e.crf = False  # evaluate.py --crf sets it.
  e.crf_backend = 'jax'  # 'jax' (batched, on the accelerator) or 'host' (pydensecrf2, all cores).
  e.crf_processes = 0  # 'host' backend: worker processes (0 = one per core).
  # Boundary accuracy: mIoU within bands of these widths (px) around void /
  # boundary pixels (the paper's trimap figure); () = skip.
  e.trimap_widths = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40)
  # Boundary pixels: 'void' (VOC's 5 px void outlines, the papers'), 'edges'
  # (label changes; for ground truth whose void marks regions, e.g. Cityscapes)
  # or 'auto' (void if an image has any, else edges).
  e.trimap_boundary = 'auto'
  # What is written to <output_dir> (default <workdir>/eval/<split>_step<step>).
  e.num_overlays = 8  # Colour overlays (image | prediction | ground truth) of the first N images.
  e.save_predictions = False  # Every prediction as a VOC palette PNG (test-server format).
  e.save_logits = 0  # Save the first N images' logits (float16, image size) for CRF re-runs; -1 = all.
  # Evaluation during training (config.eval_every_steps): the first N val
  # images as image | prediction | ground truth strips in TensorBoard, every
  # evaluation (0 = none; the scalars and the best checkpoint regardless).
  e.num_tensorboard_images = 3
  # CRF parameter search (python -m deeplab_jax.crf.search): grid over w1,
  # sigma_alpha, sigma_beta on saved logits, coarse then fine (the papers').
  e.search_images = 100  # Held-out images the search scores.
  return e


def crf(preset, normalization='after'):
  """`config.crf`: the dense CRF's parameters (fields of crf.params.CRFParams).

  `normalization='after'` (D^-1 K, DeepLab's 2011 C++ densecrf) is what the
  published parameters were tuned with; pydensecrf's default is 'symmetric'.
  """
  values = dataclasses.asdict(preset)
  values['normalization'] = normalization
  # w1 / sigma_alpha / sigma_beta: bilateral (appearance) kernel; w2 /
  # sigma_gamma: spatial smoothness; iterations: mean-field steps; unary:
  # 'logits' (U = -logits) or 'probs' (U = -log p).
  return ml_collections.ConfigDict(values)


# ---------------------------------------------------------- a config ----

def compose(dataset, input, model, optim, loss, crf, seed=0,  # pylint: disable=redefined-builtin
            eval=None, batch_size=10, grad_accum_steps=1, num_train_steps=20_000,  # pylint: disable=redefined-builtin
            log_every_steps=50, checkpoint_every_steps=1000, max_checkpoints_to_keep=3,
            eval_every_steps=0, eval_batch_size=8):
  """A whole config from its parts and the run's numbers."""
  config = ml_collections.ConfigDict()
  config.seed = seed  # Seeds initialisation, data order, augmentation, dropout.
  # Initial weights: a workdir with a checkpoint (converted official weights,
  # `python -m deeplab_jax.convert`, or another run); None = random init.
  config.init_from = placeholder(str)
  config.dataset = dataset
  config.input = input
  config.model = model
  config.optim = optim
  config.loss = loss
  config.batch_size = batch_size  # Global batch, split over all devices.
  # Micro-batches per update (the paper's iter_size: Caffe 1 x 10, the PyTorch
  # port 5 x 2): batch_size is still the global batch per update, processed as
  # grad_accum_steps micro-batches whose gradients are summed (less memory;
  # BatchNorm 'train' statistics then are per micro-batch).
  config.grad_accum_steps = grad_accum_steps
  config.num_train_steps = num_train_steps
  config.log_every_steps = log_every_steps  # Progress line and TensorBoard scalars.
  config.checkpoint_every_steps = checkpoint_every_steps  # And always at the last step.
  config.max_checkpoints_to_keep = max_checkpoints_to_keep
  config.eval_every_steps = eval_every_steps  # Evaluate during training (0 = only at evaluate.py).
  config.eval_batch_size = eval_batch_size  # Rounded up to a multiple of the device count.
  config.eval = evaluation() if eval is None else eval  # Inference, TTA, CRF, outputs.
  config.crf = crf  # The dense CRF's parameters (evaluate.py --crf, the CRF layer).
  return config
