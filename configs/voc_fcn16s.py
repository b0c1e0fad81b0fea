"""FCN-16s on PASCAL VOC, staged from FCN-32s (the release's voc-fcn16s).

    python -m deeplab_jax.convert --input fcn16s-heavy-pascal.caffemodel \
        --config configs/voc_fcn16s.py --output weights/voc_fcn16s
    python evaluate.py --config configs/voc_fcn16s.py --workdir weights/voc_fcn16s

Target: 65.0 mIoU on seg11valid (shelhamer/fcn.berkeleyvision.org README;
see configs/voc_fcn8s.py for the data caveat). Recipe (voc-fcn16s/solve.py,
solver.prototxt): from the trained FCN-32s (score_pool4 zero-initialised,
upscore2 / upscore16 bilinear, fixed), lr 1e-12 fixed, momentum 0.99,
100,000 iterations of batch 1, summed loss. Everything else as
configs/voc_fcn8s.py.
"""

from configs.voc_fcn8s import fcn_config


def get_config():
  return fcn_config(skips=('pool4',), base_lr=1e-12)
