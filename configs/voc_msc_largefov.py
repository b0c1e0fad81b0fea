"""v1 DeepLab-MSc-LargeFOV exactly as released: LargeFOV plus multi-layer "MSc" scores.

    python train.py --config configs/voc_msc_largefov.py --workdir runs/msc_largefov \
        --config.init_from=runs/largefov_v1   # a trained DeepLab-LargeFOV (configs/voc_largefov_v1.py)
    python evaluate.py --config configs/voc_msc_largefov.py --workdir runs/msc_largefov --crf

Target (v1 paper, VOC 2012 val mIoU; shared/reference.md): 64.21 before the
CRF, 68.70 after. "MSc" is not multi-scale input: a two-layer MLP on the image
and on pool1-pool4 whose class scores are summed with fc8's
(models/multilayer.py). The release is a fine-tuning stage: every layer of
DeepLab-LargeFOV, fc8 included, has blobs_lr 0, so only the MSc branches
learn, and the trunk and classifier have to come from a trained LargeFOV
model (`init_from`: a LargeFOV checkpoint, or a LargeFOV .caffemodel through
`python -m deeplab_jax.convert --config configs/voc_msc_largefov.py`, which
leaves the MSc layers absent and initialises them from the prototxt's
fillers). Every setting is read from TheLegendAli/DeepLab-Context bd4aac5,
config/DeepLab-MSc-LargeFOV/ (line numbers of its train / test / solver.prototxt):

  network     the LargeFOV trunk and head of configs/voc_largefov.py: pools
              3x3/2 pad 1 (pool1-3, train lines 189-200, 344-355, 520-531),
              3x3/1 pad 1 (pool4 689-700, pool5 872-885), pool5a AVE 3x3/1
              (887-898), fc6 3x3 hole 12 pad 12, 1024 (900-916), fc7 1024
              (932-945), fc8_${EXP} (961-982).
  MSc         data_conv / pool{1..4}_conv 3x3 pad 1, 128, stride 8 / 4 / 2 /
              1 / 1 (lines 44-67, 202-225, 357-380, 533-556, 702-725); _fc
              1x1 128; ReLU and dropout 0.5 after each; _ms 1x1 classes;
              fc_fusion ELTWISE SUM of the five _ms and fc8 (985-998); test:
              the _conv at stride 1 and Interp zooms x2 / x4 / x8 / x8 / x8
              (fc8) before the sum (test.prototxt 737-797): full-size output.
  rates       trunk conv1_1 .. fc7 and fc8 blobs_lr 0 / 0 (e.g. lines
              152-153, 906-907, 966-967); every MSc layer blobs_lr 1 / 2,
              weight_decay 1 / 0 (e.g. lines 49-52): optim.lr_mults.
  data        batch_size 30 (line 30), crop_size 321 (37), mirror (38);
              label_shrink shrink_factor 8, pad_beg 0 (1000-1010); test
              crop_size 513 (test.prototxt line 27).
  loss        SOFTMAX_LOSS ignore_label 255 on fc_fusion (1011-1021),
              normalised by the batch's valid pixels (loss.normalize 'batch',
              as configs/voc_largefov_v1.py).
  solver      base_lr 0.001 (solver.prototxt line 6), lr_policy step (3),
              gamma 0.1 (4), stepsize 2000 (5), max_iter 6000 (10), momentum
              0.9 (11), weight_decay 0.0005 (12). solver2.prototxt (max_iter
              8000, the trainval run for the test server) is not this config.
  CRF         crf_params.VGG_LARGEFOV: no file found gives MSc-LargeFOV's own.

`configs/tiny.py:voc_msc_largefov` is the same model family shrunk (VGG widths / 8,
MSc widths 8) on the built-in tiny dataset, for smoke tests.
"""

from configs import parts
from configs import voc_largefov_v1

# optim.lr_mults rows (pattern, kernel_mult, bias_mult): Caffe's blobs_lr pairs.
FROZEN_LARGEFOV = (('trunk/', 0.0, 0.0),  # conv1_1 .. conv5_3: blobs_lr 0 / 0.
                   ('head/', 0.0, 0.0),  # fc6, fc7, fc8: blobs_lr 0 / 0.
                   ('multilayer/', 1.0, 2.0))  # data_* / pool*_*: blobs_lr 1 / 2.


def get_config():
  config = voc_largefov_v1.get_config()  # Its solver; loss / valid pixels of the batch.
  config.model.multilayer = parts.multilayer(widths=(128, 128), dropout=0.5)
  config.optim.lr_mults = FROZEN_LARGEFOV
  return config
