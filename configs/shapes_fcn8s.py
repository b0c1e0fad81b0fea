"""FCN-8s (narrow VGG-16) on the built-in synthetic shapes dataset, from scratch.

    python train.py --config configs/shapes_fcn8s.py --workdir runs/shapes_fcn8s
    python evaluate.py --config configs/shapes_fcn8s.py --workdir runs/shapes_fcn8s

The FCN-8s network of configs/voc_fcn8s.py (100-pixel padding, stride-32
fc7, pool4 / pool3 skips, fixed bilinear upsampling, the release's crops) at
1/8 width (conv1 8 wide, fc6 / fc7 64) for a CPU. Not the release's recipe:
random init instead of ImageNet VGG-16, so the mean loss and a normal
learning rate (the release's summed loss at lr 1e-14 assumes pretrained
weights and batch 1), the skip scores trained with the rest (as in the
at-once net). The 100-pixel padding makes every 128-pixel crop a 326-pixel
conv1 input: 3.2 GFLOP per training image, 2.6 images/s on the shared
2-core CPU (`python -m benchmarks.train_step --config configs/shapes_fcn8s.py`,
2026-12-02; 1.1 images/s at 1/4 width, 1.5 with atrous_impl 'auto'), so
shapes.py's 1,400 steps of 8 take about 70 minutes (5-6 images/s in the
comparison run). Val mIoU after them: 0.7155, 0.7999 with the CRF
(`python -m benchmarks.compare --output runs/compare1400`, 2026-12-02).
`configs/tiny.py:shapes_fcn8s` is it shrunk for tests.
"""

from configs import family_parts
from configs import parts
from configs.shapes import get_config as shapes_config


def get_config():
  config = shapes_config()
  config.model = parts.model(
      family_parts.vgg16_fcn(base_width=8, fc_width=64, dropout=0.1),
      family_parts.fcn(skips=('pool4', 'pool3')), batch_norm='none',
      atrous_impl='dilation_taps_grad')
  config.optim = parts.sgd(base_lr=0.01, warmup_steps=20, weight_decay=1e-4, momentum=0.9,
                           backbone_bias_lr_mult=2.0, classifier_kernel_lr_mult=1.0,
                           classifier_bias_lr_mult=2.0, lr_mults=family_parts.FCN_FROZEN)
  config.loss = parts.loss(upsample_logits=True, normalize='batch')
  return config
