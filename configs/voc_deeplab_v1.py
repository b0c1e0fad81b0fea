"""v1 "DeepLab" (VGG-16, fc6 4x4 at rate 4, 4096 ch) exactly as released.

    python -m deeplab_jax.convert --input vgg128_noup/train_iter_6000.caffemodel \
        --config configs/voc_deeplab_v1.py --output weights/deeplab_v1
    python evaluate.py --config configs/voc_deeplab_v1.py --workdir weights/deeplab_v1 --crf
    python train.py --config configs/voc_deeplab_v1.py --workdir runs/deeplab_v1 \
        --config.init_from=weights/vgg16_imagenet   # decimated ImageNet VGG-16

Target (v1 paper, Table 1(a), VOC 2012 val mIoU): 59.80 before the CRF,
63.74 after. Every setting below is read from the release's prototxts in
TheLegendAli/DeepLab-Context, `voc12/vgg128_noup/` (line numbers of
train.prototxt / test.prototxt / solver.prototxt at its first commit):

  pools       pool1-3 kernel_size 2 / stride 2 / pad 1 (train.prototxt
              layers at lines 106, 160, 235); pool4 (line 310) kernel 2,
              stride 1, no pad; test.prototxt's pool4 (line 289) `pad: 1`
              (model.backbone.pools / eval_pools: models/vgg.py V1_POOLS,
              V1_EVAL_POOLS); pool5 (line 392) 3x3 / 1 / pad 1; no pool5a.
  fc6         (line 407) kernel_size 4, hole 4, pad 6, num_output 4096 (the even kernel's
              13-pixel extent padded 6 / 6); fc7 1x1 4096; dropout 0.5 after
              each; fc8_pascal 1x1 21, blobs_lr 10 / 20, gaussian std 0.01.
  crops       train crop_size 306 (line 34; = 8 * 38 + 2), batch_size 20
              (line 27), mirror, no random scaling; test crop_size 514
              (test.prototxt line 32).
  labels      label_shrink (lines 493-498) shrink_factor 8, pad_beg -1, pad_end 0:
              306 -> 305 -> 39 cells, cell j on pixel 8 j + 1
              (loss.label_offset = 1).
  test output fc8_interp (test.prototxt line 471) zoom_factor 8 and fc8_crop
              (line 480) Padding pad_beg -7,
              pad_end -8: 514 -> 67 cells (pool4 padded) -> 529 -> 514 pixels
              (eval.score_offset = 7).
  loss        SOFTMAX_LOSS: the sum over the batch's valid pixels divided by
              their count (src/caffe/layers/softmax_loss_layer.cpp, Forward_cpu:
              loss / batch_weight; loss.normalize = 'batch').
  solver      base_lr 0.001, lr_policy step, gamma 0.1, stepsize 2000,
              max_iter 6000, momentum 0.9, weight_decay 0.0005; blobs_lr 1 / 2
              and weight_decay 1 / 0 for every conv's weight / bias.
  CRF         crf_params.VGG_DEEPLAB_V1 (5, 50, 10, 3, 3), SetupEnv.m.

DeepLab-7x7 (64.38 / 67.64 with the CRF, the v1 paper's val table as a
public summary quotes it; not in shared/reference.md): no prototxt of it was
found in any public copy of the release; `--config.model.head.kernel_size=7`
builds fc6 7x7 at rate 4 on this trunk, which is an assumption, not the release.
`configs/tiny.py:voc_deeplab_v1` is the same trunk shrunk (widths / 8) on the
built-in tiny dataset for smoke tests.
"""

from configs import parts
from configs import voc_largefov_v1
from deeplab_jax.crf import params as crf_params
from deeplab_jax.models import vgg


def get_config():
  config = voc_largefov_v1.get_config()  # Its solver: step schedule, 6,000 iterations.
  config.model.backbone = parts.vgg16(
      pools=vgg.V1_POOLS,  # train.prototxt's pools.
      eval_pools=vgg.V1_EVAL_POOLS,  # test.prototxt: pool4 pad 1.
      pool5a=False)  # pool5 feeds fc6 directly.
  config.model.head = parts.aspp(
      rates=(4,),  # fc6 hole 4.
      kernel_size=4,  # fc6 kernel_size 4 (pad 6).
      hidden=(4096, 4096),  # fc6, fc7 num_output 4096.
      dropout=0.5)
  config.loss.label_offset = 1  # label_shrink pad_beg -1.
  config.eval.score_offset = 7  # fc8_crop pad_beg -7.
  config.crf = parts.crf(crf_params.VGG_DEEPLAB_V1)
  config.input.crop_size = 306
  config.input.eval_size = 514
  config.batch_size = 20  # train.prototxt batch_size 20.
  return config
