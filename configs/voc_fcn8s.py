"""FCN-8s on PASCAL VOC, staged (Long, Shelhamer, Darrell, CVPR 2015 / PAMI 2016).

    python -m deeplab_jax.convert --input fcn8s-heavy-pascal.caffemodel \
        --config configs/voc_fcn8s.py --output weights/voc_fcn8s   # the released weights
    python evaluate.py --config configs/voc_fcn8s.py --workdir weights/voc_fcn8s
    python -m deeplab_jax.convert --input fcn16s-heavy-pascal.caffemodel \
        --config configs/voc_fcn8s.py --output weights/fcn8s_from_16s
    python train.py --config configs/voc_fcn8s.py --workdir runs/voc_fcn8s \
        --config.init_from=weights/fcn8s_from_16s   # the release's stage: from FCN-16s

Targets (shelhamer/fcn.berkeleyvision.org README, "PASCAL VOC models"):
FCN-8s 65.5 mIoU on seg11valid (736 VOC 2011 val images outside SBD train)
and 67.2 on VOC 2012 test ("seg12test"); FCN-16s 65.0, FCN-32s 63.6
(seg11valid). Our `voc2012_sbd` data scores VOC 2012 val and trains on
train_aug (VOC train + all of SBD); the release trains on SBD train only
(8,498) and scores seg11valid, which this project's dataset does not
provide: numbers here are near, not equal, to those. No CRF in the paper.

The release's recipe (voc-fcn8s/solve.py, solver.prototxt, net.py):
staged, from the trained FCN-16s (the new score_pool3 zero-initialised, the
upscore layers bilinear); SGD momentum 0.99, lr 1e-14 fixed, weight decay
5e-4, 100,000 iterations (25 x 4000) of batch 1 on whole images, no
augmentation, the loss summed over pixels (`normalize: false`: loss.normalize
'sum'); Deconvolutions frozen. Whole images are batched here as 500x500
crops (VOC's largest side), the padding ignored (labels 255, input 0);
`convert` reads the FCN-16s file into this config (score_pool3 and the new
upscore layers start as the release starts them: zero, bilinear; a
checkpoint of our own FCN-16s run does not fit --config.init_from, which
needs every leaf). `configs/tiny.py:voc_fcn8s` is this family
shrunk for smoke tests.
"""

from configs import family_parts
from configs import parts
from configs.voc_largefov import voc_dataset
from deeplab_jax.crf import params as crf_params


def fcn_config(skips, base_lr, skip_scales=(), num_train_steps=100_000):
  """A VOC FCN config: FCN-32s / 16s / 8s by `skips`, the release's solver at `base_lr`."""
  return parts.compose(
      dataset=voc_dataset(),
      # Batch 1 of whole images in the release: 500x500 crops hold any VOC image whole.
      input=parts.input_(crop_size=500, eval_size=500, flip=False),
      model=parts.model(family_parts.vgg16_fcn(),
                        family_parts.fcn(skips=skips, skip_scales=skip_scales),
                        batch_norm='none', **family_parts.FCN_INPUT),
      optim=family_parts.fcn_sgd(base_lr),
      # Stride-1 logits: the labels are used as they are; summed, not averaged.
      loss=parts.loss(upsample_logits=True, normalize='sum'),
      crf=parts.crf(crf_params.VGG_LARGEFOV),  # Only for evaluate.py --crf; FCN has none.
      batch_size=1, num_train_steps=num_train_steps, checkpoint_every_steps=4000,
      eval_batch_size=8)


def get_config():
  return fcn_config(skips=('pool4', 'pool3'), base_lr=1e-14)  # solver.prototxt base_lr.
