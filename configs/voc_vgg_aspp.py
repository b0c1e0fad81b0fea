"""DeepLab v2 VGG-16 ASPP-L on PASCAL VOC 2012 trainaug (the paper's recipe).

    python train.py --config configs/voc_vgg_aspp.py --workdir runs/voc_vgg_aspp
    python evaluate.py --config configs/voc_vgg_aspp.py --workdir runs/voc_vgg_aspp

Targets (VOC 2012 val mIoU, before / after CRF): ASPP-L 68.96 / 71.57; ASPP-S
(`--config.model.head.rates=2,4,8,12`) 66.98 / 69.73. Four branches after
pool5, each fc6 (3x3 at its rate, 1024) -> fc7 (1x1, 1024) -> fc8, dropout 0.5,
summed. Same recipe as configs/voc_largefov.py otherwise.
"""

from configs import voc_largefov


def get_config():
  config = voc_largefov.get_config()
  config.model.head.rates = (6, 12, 18, 24)  # ASPP-L.
  config.model.backbone.pool5a = False  # The ASPP prototxt feeds pool5 to the branches.
  return config
