"""FCN-8s "at-once" on PASCAL VOC: all three streams trained together from VGG-16.

    python -m deeplab_jax.convert --input fcn8s-atonce-pascal.caffemodel \
        --config configs/voc_fcn8s_atonce.py --output weights/voc_fcn8s_atonce
    python evaluate.py --config configs/voc_fcn8s_atonce.py --workdir weights/voc_fcn8s_atonce

Target: 65.4 mIoU on seg11valid (shelhamer/fcn.berkeleyvision.org README,
"fine-tuned from VGG-16 all-at-once by scaling the skip connections to
better condition optimization"; see configs/voc_fcn8s.py for the data
caveat). voc-fcn8s-atonce/net.py scales pool4 by 0.01 and pool3 by 0.0001
(Scale layers, lr_mult 0) before their score layers; solve.py /
solver.prototxt: from ImageNet VGG-16, lr 1e-10 fixed, momentum 0.99,
300,000 iterations (75 x 4000) of batch 1, summed loss.
"""

from configs.voc_fcn8s import fcn_config


def get_config():
  return fcn_config(skips=('pool4', 'pool3'), skip_scales=(0.01, 0.0001), base_lr=1e-10,
                    num_train_steps=300_000)
