"""Your own folder of images and masks, on a small CPU-sized DeepLab (ASPP).

docs/own_data.md walks through it end to end; on its example folder:

    python -m deeplab_jax.data.example_folder --output /tmp/my_data
    python -m deeplab_jax.data.inspect --config configs/folder.py \\
        --config.dataset.folder=/tmp/my_data
    python train.py --config configs/folder.py --workdir runs/my_data \\
        --config.dataset.folder=/tmp/my_data
    python evaluate.py --config configs/folder.py --workdir runs/my_data \\
        --config.dataset.folder=/tmp/my_data --step best

Expected there (300 train / 60 val images of 64-128 px, binary: background /
object): train.py 2 min 33 s on a 2-core CPU (1,000 steps at ~60 img/s, five
evaluations), val mIoU 0.4931 / 0.8708 / 0.8868 / 0.9366 / 0.9352 at steps
200-1,000, the best (step 800, 0.9366: background 0.9730, object 0.9002)
kept in runs/my_data/best and scored by `--step best` (2026-12-04,
docs/own_data.md). For your data set `dataset.folder`, `dataset.builder_config` (a name
per folder version), `dataset.num_classes` and `dataset.class_names`; a
rare class: `--config.loss.class_balance=inverse_sqrt` with a lower
`--config.optim.base_lr` (0.03 on the built-in rare_star; docs/own_data.md); for
real photos start from a pretrained network instead (configs/voc_*.py with
`--config.init_from`, docs/reproducing.md), keeping this dataset section.
"""

from configs import parts
from deeplab_jax.crf import params as crf_params


def get_config():
  config = parts.compose(
      seed=0,
      dataset=parts.dataset('segmentation_folder', 2, ('background', 'object'),
                            builder_config='my_data'),  # The prepared dataset's name.
      input=parts.input_(crop_size=128, eval_size=256, scale_range=(0.75, 1.25),
                         resize='aligned', shuffle_buffer=1024, cache=True),
      model=parts.model(  # configs/shapes.py's network.
          parts.small(widths=(24, 48, 96), atrous_widths=(128, 128), atrous_rates=(2, 4)),
          parts.aspp(rates=(2, 4, 8, 12), hidden=(96,)),
          atrous_impl='dilation'),
      optim=parts.sgd(base_lr=0.1, warmup_steps=20, weight_decay=1e-4,
                      backbone_bias_lr_mult=1.0, classifier_kernel_lr_mult=1.0,
                      classifier_bias_lr_mult=1.0),
      loss=parts.loss(upsample_logits=True, normalize='batch'),
      crf=parts.crf(crf_params.RESNET_V2),
      batch_size=8, num_train_steps=1000, checkpoint_every_steps=200,
      max_checkpoints_to_keep=2, eval_batch_size=16,
      eval_every_steps=200)  # Val mIoU in TensorBoard; the best checkpoint kept.
  return config
