"""DeepLab v2 VGG-16 LargeFOV on PASCAL VOC 2012 "trainaug" (the paper's recipe).

    python train.py --config configs/voc_largefov.py --workdir runs/voc_largefov
    python evaluate.py --config configs/voc_largefov.py --workdir runs/voc_largefov

Targets (VOC 2012 val mIoU, before / after CRF): v2 LargeFOV 65.76 / 69.84,
starting from ImageNet VGG-16 (the converted weights; training from scratch
gets far less). 20,000 steps of batch 10 at crop 321: about 8 h on a Titan X
in Caffe. Data: put `VOCtrainval_11-May-2012.tar` and SBD's `benchmark.tgz`
in `~/tensorflow_datasets/downloads/manual` (or `--config.dataset.manual_dir`);
the first run prepares `voc2012_sbd` from them (README, "Datasets").

The v1 releases, each with its own recipe and CRF: configs/voc_largefov_v1.py
(this network, batch 30, step schedule), configs/voc_deeplab_v1.py (v1
"DeepLab", fc6 4x4, its own pools and crops), configs/voc_msc_largefov.py
(v1 MSc-LargeFOV). v2 ASPP-L / ASPP-S: configs/voc_vgg_aspp.py.
`configs/tiny.py:voc_largefov` is the same model family shrunk (VGG widths / 8)
on the tiny built-in dataset, for smoke tests.
"""

from configs import parts
from deeplab_jax.crf import params as crf_params

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')


def voc_dataset():
  """VOC 2012 + SBD (`voc2012_sbd`): train_aug 10,582 images, val 1,449."""
  return parts.dataset('voc2012_sbd', 21, VOC_CLASSES, train_split='train_aug')


def get_config():
  return parts.compose(
      dataset=voc_dataset(),
      # Whole VOC images (<= 500 px) padded to 513; no random scaling for v2 VGG.
      input=parts.input_(crop_size=321, eval_size=513),
      model=parts.model(
          parts.vgg16(pool5a=True),
          parts.aspp(rates=(12,), hidden=(1024, 1024), dropout=0.5),  # LargeFOV: fc6 at rate 12.
          batch_norm='none',  # VGG has no BatchNorm.
          **parts.CAFFE_INPUT),
      optim=parts.sgd(base_lr=1e-3),  # fc8 at 10x / 20x, other biases 2x, decay 5e-4.
      loss=parts.loss(upsample_logits=False, normalize='image'),
      # The v1 LargeFOV release's run_densecrf.sh (4, 49, 5, 3, 3); no v2 VGG values were found.
      crf=parts.crf(crf_params.VGG_LARGEFOV),
      batch_size=10, num_train_steps=20_000)
