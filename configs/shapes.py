"""Small DeepLab (atrous trunk + ASPP) on the built-in synthetic shapes dataset.

The README's Quick start runs this (`make demo`):

    python train.py --config configs/shapes.py --workdir runs/shapes
    python evaluate.py --config configs/shapes.py --workdir runs/shapes

Expected on a 2-core CPU (no accelerator): about 6 minutes of training
(1,400 steps of 8 crops at ~30 images/s), then val mIoU 0.914 (seed 1; 0.943
with --crf; measured 2026-12-02, benchmarks/README.md), written to runs/shapes/metrics.json. Training is somewhat
seed-sensitive: the loss sits on a plateau (~0.8, shapes not yet told apart)
for a while; seeds 0 and 2 gave 0.851 and 0.908 after 1,400 steps.
`configs/tiny.py:shapes` is the same pipeline shrunk for tests (seconds,
meaningless numbers).

Choices that made the CPU budget work: batch 8 (more updates for the same
compute beat batch 16), base lr 0.1 with BatchNorm, and the paper's ASPP-S
rates {2, 4, 8, 12}, which let interior pixels of large objects see their
boundaries; rates {1, 2, 4, 6} gave 0.66-0.80 in otherwise equal runs.
"""

from configs import parts
from deeplab_jax.crf import params as crf_params
from deeplab_jax.data.shapes_render import CLASS_NAMES


def get_config():
  return parts.compose(
      seed=1,  # See above: training is somewhat seed-sensitive.
      dataset=parts.dataset('synthetic_shapes', len(CLASS_NAMES), CLASS_NAMES,
                            builder_config='default'),  # 'default' (2,000/300) or 'tiny'.
      input=parts.input_(crop_size=128, eval_size=192, scale_range=(0.9, 1.1),
                         resize='aligned', shuffle_buffer=1024, cache=True),
      model=parts.model(
          parts.small(widths=(24, 48, 96), atrous_widths=(128, 128), atrous_rates=(2, 4)),
          parts.aspp(rates=(2, 4, 8, 12), hidden=(96,)),  # ASPP-S rates, one hidden layer.
          atrous_impl='dilation'),
      optim=parts.sgd(base_lr=0.1, warmup_steps=20, weight_decay=1e-4,
                      backbone_bias_lr_mult=1.0, classifier_kernel_lr_mult=1.0,
                      classifier_bias_lr_mult=1.0),
      loss=parts.loss(upsample_logits=True, normalize='batch'),
      crf=parts.crf(crf_params.RESNET_V2),  # The v2 ResNet-101 parameters.
      batch_size=8, num_train_steps=1400, checkpoint_every_steps=400,
      max_checkpoints_to_keep=2, eval_batch_size=16)
