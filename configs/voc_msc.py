"""v1 DeepLab-MSc exactly as released: v1 DeepLab's fc6 4x4 plus multi-layer "MSc" scores.

    python train.py --config configs/voc_msc.py --workdir runs/msc \
        --config.init_from=runs/deeplab_msc_base   # trained trunk + fc6 / fc7 (see below)
    python evaluate.py --config configs/voc_msc.py --workdir runs/msc --crf

Target: the v1 paper's DeepLab-MSc row (not in shared/reference.md, which
lists MSc-LargeFOV's 64.21 / 68.70 only). Read from TheLegendAli/
DeepLab-Context bd4aac5, config/DeepLab-MSc/ (train / test / solver.prototxt
line numbers):

  trunk       NOT vgg128_noup's (configs/voc_deeplab_v1.py: 2x2 pools): pools
              3x3/2 pad 1 (pool1-3, train lines 189-200, 344-355, 519-530),
              pool4 3x3/1 pad 1 (687-698), pool5 3x3/1 pad 1 (869-882), the
              same in test.prototxt (lines 140-142, 251-253, 378-380,
              506-508, 650-652): model.backbone.pools = LARGEFOV_POOLS, no pool5a
              (pool5 feeds fc6, line 885); conv5_x hole 2 pad 2.
  head        fc6 kernel_size 4, hole 4, pad 6, 4096 (lines 884-900), fc7
              1x1 4096 (916-930), fc8_pascal 1x1 classes (946-967).
  MSc         as configs/voc_msc_largefov.py (data_conv lines 43-66 ...
              pool4_ms 777-799; fc_fusion SUM 970-985; test zooms x2 / x4 /
              x8 / x8 / x8, test.prototxt 721-782).
  rates       conv1_1 .. fc7 blobs_lr 0 / 0 (e.g. lines 152-153, 890-891);
              fc8_pascal blobs_lr 1 / 2 (952-953): here the classifier trains,
              unlike MSc-LargeFOV; MSc layers 1 / 2, weight_decay 1 / 0.
  data        batch_size 20 (line 29), crop_size 321 (36), mirror (37);
              label_shrink shrink_factor 8, pad_beg 0 (987-997); test
              crop_size 513 (test.prototxt 25).
  solver      base_lr 0.001, step, gamma 0.1, stepsize 2000, max_iter 6000,
              momentum 0.9, weight_decay 0.0005 (solver.prototxt 3-11).
  CRF         crf_params.VGG_MSC (3, 95, 3, 3, 3; SetupEnv.m "vgg128_ms_pool3,
              aka DeepLab-MSc").

The trunk and fc6 / fc7 are frozen, so `init_from` must hold a trained
network of this layout (LargeFOV pools, fc6 4x4 hole 4, 4096). No release in
the repository trains one (vgg128_noup has 2x2 pools): which model the
authors fine-tuned from is not stated in these files.
"""

from configs import parts
from configs import voc_msc_largefov
from deeplab_jax.crf import params as crf_params

# optim.lr_mults rows: Caffe's blobs_lr pairs.
FROZEN_DEEPLAB = (('trunk/', 0.0, 0.0),  # conv1_1 .. conv5_3: blobs_lr 0 / 0.
                  ('head/branch0_hidden', 0.0, 0.0),  # fc6, fc7: 0 / 0.
                  ('head/branch0_classifier', 1.0, 2.0),  # fc8_pascal: 1 / 2.
                  ('multilayer/', 1.0, 2.0))  # data_* / pool*_*: 1 / 2.


def get_config():
  config = voc_msc_largefov.get_config()
  config.model.backbone.pool5a = False  # pool5 feeds fc6 (LargeFOV pools otherwise).
  config.model.head = parts.aspp(rates=(4,), kernel_size=4, hidden=(4096, 4096), dropout=0.5)
  config.batch_size = 20
  config.optim.lr_mults = FROZEN_DEEPLAB
  config.crf = parts.crf(crf_params.VGG_MSC)
  return config
