"""FCN-8s (narrow VGG-16) on the built-in synthetic shapes dataset, from scratch.

    python train.py --config configs/shapes_fcn8s.py --workdir runs/shapes_fcn8s
    python evaluate.py --config configs/shapes_fcn8s.py --workdir runs/shapes_fcn8s

The FCN-8s network of configs/voc_fcn8s.py (100-pixel padding, stride-32
fc7, pool4 / pool3 skips, fixed bilinear upsampling, the release's crops) at
1/4 width (fc6 / fc7 64 wide) for a CPU. Not the release's recipe: random
init instead of ImageNet VGG-16, so the mean loss and a normal learning rate
(the release's summed loss at lr 1e-14 assumes pretrained weights and
batch 1), the skip scores trained with the rest (as in the at-once net).
NOT TUNED, NO mIoU MEASURED. Speed measured once (6 steps, `train.py
--config configs/shapes_fcn8s.py --config.num_train_steps=6`, the 2-core CPU
shared with other jobs): 1.0-1.3 images/s, since the 100-pixel padding
makes every 128-pixel crop a 326-pixel conv1 input; shapes.py's 1,400
steps of 8 would take about 3 hours, not minutes: smaller crops or fewer
steps are still to be chosen. configs/shapes.py is the tuned demo. `configs/tiny.py:shapes_fcn8s` is it shrunk for tests.
"""

from configs import parts
from configs.shapes import get_config as shapes_config


def get_config():
  config = shapes_config()
  config.model = parts.model(
      parts.vgg16_fcn(base_width=16, fc_width=64, dropout=0.1),
      parts.fcn(skips=('pool4', 'pool3')), batch_norm='none', atrous_impl='dilation')
  config.optim = parts.sgd(base_lr=0.01, warmup_steps=20, weight_decay=1e-4, momentum=0.9,
                           backbone_bias_lr_mult=2.0, classifier_kernel_lr_mult=1.0,
                           classifier_bias_lr_mult=2.0, lr_mults=parts.FCN_FROZEN)
  config.loss = parts.loss(upsample_logits=True, normalize='batch')
  return config
