"""Small DeepLab (atrous trunk + ASPP) on the built-in synthetic shapes dataset.

The README's Quick start runs this (`make demo`):

    python train.py --config configs/shapes.py --workdir runs/shapes
    python evaluate.py --config configs/shapes.py --workdir runs/shapes

Expected on a 2-core CPU (no accelerator): about 6 minutes of training
(1,400 steps of 8 crops at ~30 images/s), then val mIoU 0.926 (seed 1; 0.946
with --crf), written to runs/shapes/metrics.json. Training is somewhat
seed-sensitive: the loss sits on a plateau (~0.8, shapes not yet told apart)
for a while; seeds 0 and 2 gave 0.851 and 0.908 after 1,400 steps.
`configs/shapes.py:tiny` is the same pipeline shrunk for tests (seconds,
meaningless numbers).

Choices that made the CPU budget work: batch 8 (more updates for the same
compute beat batch 16), base lr 0.1 with BatchNorm, and the paper's ASPP-S
rates {2, 4, 8, 12}, which let interior pixels of large objects see their
boundaries; rates {1, 2, 4, 6} gave 0.66-0.80 in otherwise equal runs.
"""

import ml_collections

from configs import common
from deeplab_jax.crf import params as crf_params
from deeplab_jax.models import vgg

from deeplab_jax.data.shapes_render import CLASS_NAMES


def get_config(variant=None):
  config = ml_collections.ConfigDict()
  config.seed = 1  # Seeds initialisation, data order, augmentation, dropout (see above).

  # Initial weights: a workdir with a checkpoint (converted official weights,
  # `python -m deeplab_jax.convert`, or another run); None = random init.
  config.init_from = ml_collections.config_dict.placeholder(str)

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'synthetic_shapes'  # TFDS name; built on first use.
  config.dataset.builder_config = 'default'  # 'default' (2,000/300) or 'tiny'.
  config.dataset.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS dir; None = ~/tensorflow_datasets.
  config.dataset.manual_dir = ml_collections.config_dict.placeholder(str)  # Downloaded archives (VOC, Cityscapes).
  config.dataset.folder = ml_collections.config_dict.placeholder(str)  # name 'segmentation_folder' only: your data.
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'val'  # Never trained on.
  config.dataset.num_classes = len(CLASS_NAMES)
  config.dataset.class_names = CLASS_NAMES
  config.dataset.ignore_label = 255  # Void pixels: no loss, not scored.

  config.input = ml_collections.ConfigDict()
  config.input.crop_size = 128  # Square training crop (paper: 321).
  config.input.scales = ()  # Discrete random scales (paper: 0.5..1.5); () = use scale_range.
  config.input.scale_range = (0.9, 1.1)  # Continuous random scale when `scales` is empty.
  config.input.flip = True  # Random horizontal flip.
  # Training resize: 'aligned' (corner-aligned bilinear / nearest of the rounded size) or
  # 'caffe' (Caffe's data layer: truncated size, OpenCV INTER_LINEAR / INTER_NEAREST, padding 0).
  config.input.resize = 'aligned'
  config.input.shuffle_buffer = 1024  # Examples in the shuffle buffer.
  config.input.cache = True  # Keep decoded training images in memory (small datasets).
  config.input.eval_size = 192  # Eval images are padded to this square (>= largest image).

  config.model = ml_collections.ConfigDict()
  config.model.trunk = 'small'  # Backbone: 'small' (narrow), 'vgg16' or 'resnet'; output stride 8.
  config.model.widths = (24, 48, 96)  # Stride-2 stage widths (strides 2, 4, 8).
  config.model.atrous_widths = (128, 128)  # Atrous stages after output stride 8.
  config.model.atrous_rates = (2, 4)  # Their rates (field of view grows, stride stays 8).
  config.model.residual = False  # ResNet basic blocks after the first stage.
  config.model.resnet_depth = 101  # trunk 'resnet' only: 50, 101, 152 (14 for tests).
  config.model.base_width = 64  # 'vgg16' / 'resnet': first conv's width, the rest scale (paper: 64).
  config.model.vgg_pool5a = False  # trunk 'vgg16' only: LargeFOV's 3x3 average pool before fc6.
  # trunk 'vgg16': pool1 .. pool5 as (kernel, stride, pad), the release's
  # (models/vgg.py: LARGEFOV_POOLS; v1 DeepLab V1_POOLS); vgg_eval_pools the
  # test prototxt's where it differs (v1 DeepLab: V1_EVAL_POOLS), () = same.
  config.model.vgg_pools = vgg.LARGEFOV_POOLS
  config.model.vgg_eval_pools = ()
  config.model.multilayer_widths = ()  # v1 "MSc" MLP on image + pool1-4 (VGG: (128, 128)).
  config.model.input_scales = (1.0,)  # v2 MSC: (1.0, 0.75, 0.5), max-fused.
  config.model.batch_norm = 'train'  # 'train' (global-batch stats), 'frozen' or 'none'.
  config.model.head_rates = (2, 4, 8, 12)  # ASPP-S rates (the paper's {2, 4, 8, 12}), summed.
  config.model.head_kernel_size = 3  # fc6 kernel (v1 DeepLab: 4, DeepLab-7x7: 7).
  config.model.head_hidden = (96,)  # Per-branch hidden widths (VGG ASPP: (1024, 1024)).
  config.model.dropout = 0.0  # Dropout after each hidden head layer (paper: 0.5).
  config.model.atrous_impl = 'dilation'  # 'auto', 'dilation', 'space_to_batch' or 'taps' (same numbers).
  config.model.dtype = 'float32'  # Activation dtype: 'float32' or 'bfloat16' (GPU/TPU).
  config.model.channel_order = 'rgb'  # 'bgr' for Caffe weights.
  config.model.pixel_mean = (123.675, 116.28, 103.53)  # Subtracted, in channel_order.
  config.model.pixel_std = (58.395, 57.12, 57.375)  # Divided by (Caffe: 1, 1, 1).
  config.model.align_corners = False  # Bilinear resizing convention (Caffe: True).
  # Dense CRF as the last layer, trained through (models/crf_layer.py): the
  # output becomes the CRF's log Q at image size, for loss and eval alike.
  # Its kernel weights w1, w2 are learned (params/crf/*, started from
  # config.crf); config.crf's sigmas and normalization are used as they are.
  config.model.crf_layer = False  # True: train / evaluate through the CRF (slower steps).
  config.model.crf_layer_iterations = 5  # Mean-field steps unrolled in the layer.

  config.optim = ml_collections.ConfigDict()
  config.optim.base_lr = 0.1  # Scaled by optim.schedule.
  # 'poly' (v2): base_lr * (1 - step / steps) ** power; 'step' (v1):
  # base_lr * step_gamma ** (step // step_every).
  config.optim.schedule = 'poly'
  config.optim.step_every = 2000  # 'step' only.
  config.optim.step_gamma = 0.1  # 'step' only.
  config.optim.power = 0.9
  config.optim.warmup_steps = 20  # Linear warm-up (paper: 0).
  config.optim.momentum = 0.9
  config.optim.weight_decay = 1e-4  # On conv kernels only (paper: 5e-4).
  config.optim.backbone_bias_lr_mult = 1.0  # Paper (Caffe): 2 for the other convs' biases.
  config.optim.classifier_kernel_lr_mult = 1.0  # Paper: 10 for the last layer's weights.
  config.optim.classifier_bias_lr_mult = 1.0  # Paper: 20 for its biases.
  # Per-layer rates (Caffe's blobs_lr pairs): rows (regex on the module path,
  # kernel_mult, bias_mult), first match wins, 0 = frozen; () = the groups
  # above (configs/voc_msc_largefov.py freezes trunk and head this way).
  config.optim.lr_mults = ()

  config.loss = ml_collections.ConfigDict()
  config.loss.upsample_logits = True  # True: logits upsampled to the label size;
  # False: labels shrunk (nearest) to the logits' size, as the paper trains.
  # 'batch': one mean over the batch's valid pixels; 'image': each image's
  # mean, averaged over images (Caffe's batch 1 x iter_size; the VOC configs).
  config.loss.normalize = 'batch'
  # Pixels dropped at the top and left of the labels before they are shrunk
  # to the score map (loss.upsample_logits False, corners aligned): Caffe's
  # label_shrink `pad_beg`, negated (v1 DeepLab: 1, its score cell j sits on
  # pixel 8 j + 1; the other releases: 0).
  config.loss.label_offset = 0

  config.batch_size = 8  # Global batch, split over all devices.
  # Micro-batches per update (the paper's iter_size: Caffe 1 x 10, the PyTorch
  # port 5 x 2): batch_size is still the global batch per update, processed as
  # grad_accum_steps micro-batches whose gradients are summed (less memory;
  # BatchNorm 'train' statistics then are per micro-batch).
  config.grad_accum_steps = 1
  config.num_train_steps = 1400
  config.log_every_steps = 50  # Progress line and TensorBoard scalars.
  config.checkpoint_every_steps = 400  # And always at the last step.
  config.max_checkpoints_to_keep = 2
  config.eval_every_steps = 0  # Evaluate during training (0 = only at evaluate.py).
  config.eval_batch_size = 16  # Rounded up to a multiple of the device count.

  config.eval = common.evaluation()  # Inference mode, TTA, CRF, outputs (configs/common.py).
  config.crf = common.crf(crf_params.RESNET_V2)  # The v2 ResNet-101 parameters.

  if variant == 'tiny':
    config.dataset.builder_config = 'tiny'
    config.input.crop_size = 32
    config.input.eval_size = 64
    config.input.shuffle_buffer = 32
    config.model.widths = (4, 8, 8)
    config.model.atrous_widths = (8,)
    config.model.atrous_rates = (2,)
    config.model.head_rates = (1, 2)
    config.model.head_hidden = (8,)
    config.optim.warmup_steps = 0
    config.batch_size = 8
    config.num_train_steps = 4
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.eval_batch_size = 8
  elif variant is not None:
    raise ValueError(f'unknown variant {variant!r}; use configs/shapes.py or configs/shapes.py:tiny')
  return config
