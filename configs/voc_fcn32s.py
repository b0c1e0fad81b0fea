"""FCN-32s on PASCAL VOC, from ImageNet VGG-16 (the release's voc-fcn32s).

    python -m deeplab_jax.convert --input fcn32s-heavy-pascal.caffemodel \
        --config configs/voc_fcn32s.py --output weights/voc_fcn32s
    python evaluate.py --config configs/voc_fcn32s.py --workdir weights/voc_fcn32s

Target: 63.6 mIoU on seg11valid (shelhamer/fcn.berkeleyvision.org README;
see configs/voc_fcn8s.py for the data caveat). Recipe (voc-fcn32s/solve.py,
solver.prototxt): from ImageNet VGG-16 (`vgg16-fcn.caffemodel`, fc6 / fc7
as 7x7 / 1x1 convs; `convert` reads the ILSVRC VGG_ILSVRC_16_layers file the
same way, score_fr zero-initialised, upscore bilinear and fixed), lr 1e-10
fixed, momentum 0.99, 100,000 iterations of batch 1, summed loss.
"""

from configs.voc_fcn8s import fcn_config


def get_config():
  return fcn_config(skips=(), base_lr=1e-10)
