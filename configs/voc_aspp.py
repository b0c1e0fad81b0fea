"""DeepLab v2 ResNet-101 ASPP-L with multi-scale inputs (MSC): the paper's best.

    python -m deeplab_jax.convert --input init.caffemodel --config configs/voc_aspp.py \
        --output weights/coco_init   # once: the COCO-pretrained start
    python train.py --config configs/voc_aspp.py --workdir runs/voc_aspp \
        --config.init_from=weights/coco_init
    python evaluate.py --config configs/voc_aspp.py --workdir runs/voc_aspp

or evaluate the released model directly: convert `train_iter_20000.caffemodel`
to weights/voc_aspp and `python evaluate.py ... --workdir weights/voc_aspp`.

Targets (VOC 2012 val mIoU): 76.35 before CRF, 77.69 after (the PyTorch port,
same recipe: 76.65 / 77.93), starting from the COCO-pretrained `init.caffemodel`
converted. 20,000 steps of batch 10 at crop 321 with random scales
{0.5, 0.75, 1, 1.25, 1.5}; frozen BatchNorm; lr 2.5e-4 (ASPP weights 10x,
biases 20x); four losses summed (scales 1, 0.75, 0.5 and their max). A
forward pass costs 276 GFLOP per 321x321 image with MSC (150 without).
`--config.model.input_scales=1.0` trains without MSC; `--config.model.head_rates=12`
is the ResNet LargeFOV (75.54).
"""

from configs import common
from configs import voc_largefov
from deeplab_jax.crf import params as crf_params


def get_config(variant=None):
  config = voc_largefov.get_config(variant)
  config.input.scales = (0.5, 0.75, 1.0, 1.25, 1.5)  # Random scale, one of these.

  config.model.trunk = 'resnet'
  config.model.resnet_depth = 101
  config.model.base_width = 64
  config.model.vgg_pool5a = False  # VGG only.
  config.model.batch_norm = 'frozen'  # Statistics and scale/offset fixed (Caffe use_global_stats).
  config.model.head_rates = (6, 12, 18, 24)  # ASPP-L: four 3x3 convs 2048 -> classes, summed.
  config.model.head_hidden = ()  # No fc6/fc7: each branch is the classifier.
  config.model.dropout = 0.0
  config.model.input_scales = (1.0, 0.75, 0.5)  # MSC, max-fused.

  config.optim.base_lr = 2.5e-4
  config.crf = common.crf(crf_params.RESNET_V2)  # w1=4, sigma_alpha=67, sigma_beta=3, w2=3, sigma_gamma=1.
  if variant == 'tiny':
    config.model.resnet_depth = 14
    config.model.base_width = 8
    config.model.batch_norm = 'train'  # Random init: frozen statistics would be meaningless.
    config.input.scales = (0.75, 1.0, 1.25)
  return config
