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
`--config.model.input_scales=1.0` trains without MSC; `--config.model.head.rates=12`
is the ResNet LargeFOV (75.54).
"""

from configs import parts
from configs import voc_largefov
from deeplab_jax.crf import params as crf_params


def get_config():
  config = voc_largefov.get_config()
  config.input.scales = (0.5, 0.75, 1.0, 1.25, 1.5)  # Random scale, one of these.
  config.model = parts.model(
      parts.resnet(depth=101),
      parts.aspp(rates=(6, 12, 18, 24)),  # ASPP-L: four 3x3 convs 2048 -> classes, summed.
      input_scales=(1.0, 0.75, 0.5),  # MSC, max-fused.
      batch_norm='frozen',  # Statistics and scale/offset fixed (Caffe use_global_stats).
      **parts.CAFFE_INPUT)
  config.optim.base_lr = 2.5e-4
  config.crf = parts.crf(crf_params.RESNET_V2)  # w1=4, sigma_alpha=67, sigma_beta=3, w2=3, sigma_gamma=1.
  return config
