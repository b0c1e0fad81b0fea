"""DeepLab v2 VGG-16 LargeFOV on PASCAL VOC 2012 "trainaug" (the paper's recipe).

    python train.py --config configs/voc_largefov.py --workdir runs/voc_largefov
    python evaluate.py --config configs/voc_largefov.py --workdir runs/voc_largefov

Targets (VOC 2012 val mIoU, before / after CRF): v2 LargeFOV 65.76 / 69.84,
starting from ImageNet VGG-16 (the converted weights; training from scratch
gets far less). 20,000 steps of batch 10 at crop 321: about 8 h on a Titan X
in Caffe. Data: put `VOCtrainval_11-May-2012.tar` and SBD's `benchmark.tgz`
in `~/tensorflow_datasets/downloads/manual` (or `--config.dataset.manual_dir`);
the first run prepares `voc2012_sbd` from them (README, "Datasets").

The v1 releases, each with its own recipe and CRF: configs/voc_largefov_v1.py
(this network, batch 30, step schedule), configs/voc_deeplab_v1.py (v1
"DeepLab", fc6 4x4, its own pools and crops), configs/voc_msc_largefov.py
(v1 MSc-LargeFOV). v2 ASPP-L / ASPP-S: configs/voc_vgg_aspp.py.
`configs/voc_largefov.py:tiny` is the same model family shrunk (VGG widths / 8)
on the tiny built-in dataset, for smoke tests.
"""

import ml_collections

from configs import common
from configs import shapes
from deeplab_jax.crf import params as crf_params
from deeplab_jax.models import vgg

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')


def get_config(variant=None):
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds initialisation, data order, augmentation, dropout.

  # Initial weights: a workdir with a checkpoint (converted official weights,
  # `python -m deeplab_jax.convert`, or another run); None = random init.
  config.init_from = ml_collections.config_dict.placeholder(str)

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'voc2012_sbd'  # TFDS name (VOC 2012 + SBD).
  config.dataset.builder_config = ''  # No variants.
  config.dataset.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS dir; None = ~/tensorflow_datasets.
  # VOCtrainval_11-May-2012.tar and benchmark.tgz (SBD); None = <data_dir>/downloads/manual.
  config.dataset.manual_dir = ml_collections.config_dict.placeholder(str)
  config.dataset.folder = ml_collections.config_dict.placeholder(str)  # name 'segmentation_folder' only: your data.
  config.dataset.train_split = 'train_aug'  # 10,582 images.
  config.dataset.eval_split = 'val'  # 1,449 images.
  config.dataset.num_classes = 21
  config.dataset.class_names = VOC_CLASSES
  config.dataset.ignore_label = 255  # Object boundaries: no loss, not scored.

  config.input = ml_collections.ConfigDict()
  config.input.crop_size = 321  # Square training crop.
  config.input.scales = ()  # Random scales (v2 ResNet: 0.5..1.5); () = use scale_range.
  config.input.scale_range = (1.0, 1.0)  # No random scaling for v2 VGG.
  config.input.flip = True  # Random horizontal flip.
  # Training resize: 'caffe' (Caffe's data layer: truncated size, OpenCV INTER_LINEAR /
  # INTER_NEAREST, padding exactly 0 at the input) or 'aligned' (corner-aligned, rounded size).
  config.input.resize = 'caffe'
  config.input.shuffle_buffer = 2048  # Examples in the shuffle buffer.
  config.input.cache = False  # 10,582 decoded images do not fit in host memory.
  config.input.eval_size = 513  # Whole VOC images (<= 500 px) padded to 513.

  config.model = ml_collections.ConfigDict()
  config.model.trunk = 'vgg16'  # Backbone: 'small', 'vgg16' or 'resnet'; output stride 8.
  config.model.widths = ()  # trunk 'small' only.
  config.model.atrous_widths = ()  # trunk 'small' only.
  config.model.atrous_rates = ()  # trunk 'small' only.
  config.model.residual = False  # trunk 'small' only.
  config.model.resnet_depth = 101  # trunk 'resnet' only: 50, 101, 152 (14 for tests).
  config.model.base_width = 64  # 'vgg16' / 'resnet': first conv's width, the rest scale (paper: 64).
  config.model.vgg_pool5a = True  # LargeFOV's 3x3 average pool before fc6.
  # trunk 'vgg16': pool1 .. pool5 as (kernel, stride, pad), the release's
  # (models/vgg.py: LARGEFOV_POOLS; v1 DeepLab V1_POOLS); vgg_eval_pools the
  # test prototxt's where it differs (v1 DeepLab: V1_EVAL_POOLS), () = same.
  config.model.vgg_pools = vgg.LARGEFOV_POOLS
  config.model.vgg_eval_pools = ()
  config.model.multilayer_widths = ()  # v1 "MSc" MLP on image + pool1-4: (128, 128).
  config.model.input_scales = (1.0,)  # v2 MSC: (1.0, 0.75, 0.5), max-fused.
  config.model.batch_norm = 'none'  # VGG has no BatchNorm.
  config.model.head_rates = (12,)  # LargeFOV: one branch at rate 12.
  config.model.head_kernel_size = 3  # fc6 kernel (v1 DeepLab: 4, DeepLab-7x7: 7).
  config.model.head_hidden = (1024, 1024)  # fc6, fc7 widths (v1 DeepLab: 4096).
  config.model.dropout = 0.5  # After fc6 and fc7.
  config.model.atrous_impl = 'auto'  # 'auto', 'dilation', 'space_to_batch' or 'taps' (same numbers).
  config.model.dtype = 'float32'  # Activation dtype: 'float32' or 'bfloat16' (GPU/TPU).
  config.model.channel_order = 'bgr'  # Caffe weights take BGR ...
  config.model.pixel_mean = (104.008, 116.669, 122.675)  # ... 0-255 minus the Caffe mean (BGR).
  config.model.pixel_std = (1.0, 1.0, 1.0)  # No scaling.
  config.model.align_corners = True  # Caffe's Interp convention for every bilinear resize.
  # Dense CRF as the last layer, trained through (models/crf_layer.py): the
  # output becomes the CRF's log Q at image size, for loss and eval alike.
  # Its kernel weights w1, w2 are learned (params/crf/*, started from
  # config.crf); config.crf's sigmas and normalization are used as they are.
  config.model.crf_layer = False  # True: train / evaluate through the CRF (slower steps).
  config.model.crf_layer_iterations = 5  # Mean-field steps unrolled in the layer.

  config.optim = ml_collections.ConfigDict()
  config.optim.base_lr = 1e-3  # Scaled by optim.schedule.
  # 'poly' (v2): base_lr * (1 - step / steps) ** power; 'step' (v1):
  # base_lr * step_gamma ** (step // step_every).
  config.optim.schedule = 'poly'
  config.optim.step_every = 2000  # 'step' only.
  config.optim.step_gamma = 0.1  # 'step' only.
  config.optim.power = 0.9
  config.optim.warmup_steps = 0
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4  # On conv kernels only.
  config.optim.backbone_bias_lr_mult = 2.0  # Other conv biases at 2x, as Caffe's lr_mult: 2.
  config.optim.classifier_kernel_lr_mult = 10.0  # fc8 weights at 10x.
  config.optim.classifier_bias_lr_mult = 20.0  # fc8 biases at 20x.
  # Per-layer rates (Caffe's blobs_lr pairs): rows (regex on the module path,
  # kernel_mult, bias_mult), first match wins, 0 = frozen; () = the groups
  # above (configs/voc_msc_largefov.py freezes trunk and head this way).
  config.optim.lr_mults = ()

  config.loss = ml_collections.ConfigDict()
  config.loss.upsample_logits = False  # Labels shrunk (nearest) to the score map, as the paper.
  # 'image': each image's mean over its valid pixels, averaged over the batch
  # (Caffe's batch 1 x iter_size 10, the paper's); 'batch': one mean over the
  # batch's valid pixels (the PyTorch port's, per micro-batch of 5).
  config.loss.normalize = 'image'
  # Pixels dropped at the top and left of the labels before they are shrunk
  # to the score map (loss.upsample_logits False, corners aligned): Caffe's
  # label_shrink `pad_beg`, negated (v1 DeepLab: 1, its score cell j sits on
  # pixel 8 j + 1; the other releases: 0).
  config.loss.label_offset = 0

  config.batch_size = 10  # Global batch, split over all devices.
  # Micro-batches per update (the paper's iter_size: Caffe 1 x 10, the PyTorch
  # port 5 x 2): batch_size is still the global batch per update, processed as
  # grad_accum_steps micro-batches whose gradients are summed (less memory;
  # BatchNorm 'train' statistics then are per micro-batch).
  config.grad_accum_steps = 1
  config.num_train_steps = 20_000
  config.log_every_steps = 50  # Progress line and TensorBoard scalars.
  config.checkpoint_every_steps = 1000  # And always at the last step.
  config.max_checkpoints_to_keep = 3
  config.eval_every_steps = 0  # Evaluate during training (0 = only at evaluate.py).
  config.eval_batch_size = 8  # Rounded up to a multiple of the device count.

  config.eval = common.evaluation()  # Inference mode, TTA, CRF, outputs (configs/common.py).
  # The v1 LargeFOV release's run_densecrf.sh (4, 49, 5, 3, 3); no v2 VGG values were found.
  config.crf = common.crf(crf_params.VGG_LARGEFOV)

  if variant == 'tiny':
    shrink_for_tests(config)
    config.model.base_width = 8
    config.model.head_hidden = (16, 16)
  elif variant is not None:
    raise ValueError(f'unknown variant {variant!r}; use ...:tiny or nothing')
  return config


def shrink_for_tests(config):
  """The tiny built-in dataset, small crops, a few steps (model set by caller)."""
  tiny = shapes.get_config('tiny')
  config.dataset = tiny.dataset
  config.input = tiny.input
  for key in ('batch_size', 'num_train_steps', 'log_every_steps',
              'checkpoint_every_steps', 'eval_batch_size'):
    config[key] = tiny[key]
  config.model.pixel_std = (58.4, 57.1, 57.4)  # Random init needs unit-scale inputs.
