"""v1 DeepLab-LargeFOV with the release's own recipe (the v1 paper's model).

    python train.py --config configs/voc_largefov_v1.py --workdir runs/largefov_v1 \
        --config.init_from=weights/vgg16_imagenet   # decimated ImageNet VGG-16
    python evaluate.py --config configs/voc_largefov_v1.py --workdir runs/largefov_v1 --crf

Target (v1 paper, Table 1(a), VOC 2012 val mIoU): 62.25 before the CRF, 67.64
after. The network is configs/voc_largefov.py's (pool1-3 3x3/2, pool4-5
3x3/1, pool5a, fc6 3x3 hole 12 1024, fc7 1024); the recipe is read from the
release, corenel/deeplab-public exper/voc12/config/deeplab_largeFOV/:

  train.prototxt  batch_size 30 (line 30; the paper's text says 20:
                  --config.batch_size=20), crop_size 321 (line 37), mirror,
                  no random scaling; label_shrink shrink_factor 8, pad_beg 0
                  (lines 489-494); SOFTMAX_LOSS with ignore_label 255,
                  normalised by the batch's valid pixels
                  (src/caffe/layers/softmax_loss_layer.cpp: loss / batch_weight);
                  blobs_lr 1 / 2 and weight_decay 1 / 0 for conv1_1 .. fc7,
                  10 / 20 for fc8 (line 465).
  test.prototxt   crop_size 513 (line 27); fc8_interp zoom_factor 8 (line 410),
                  no crop: 65 cells -> 513 pixels.
  solver.prototxt base_lr 0.001, lr_policy step, gamma 0.1, stepsize 2000,
                  max_iter 6000, momentum 0.9, weight_decay 0.0005.
  exper/run_densecrf.sh  the CRF: Bi_W 4, Bi_X_STD 49, Bi_R_STD 5, POS_W 3,
                  POS_X_STD 3, MAX_ITER 10 (crf_params.VGG_LARGEFOV).

configs/voc_largefov.py is the v2 paper's recipe for the same network (poly,
20,000 steps of batch 10): 65.76 / 69.84. `configs/tiny.py:voc_largefov_v1` is it
shrunk for smoke tests.
"""

from configs import voc_largefov


def get_config():
  config = voc_largefov.get_config()
  config.loss.normalize = 'batch'  # SoftmaxWithLoss: / valid pixels of the batch.
  config.batch_size = 30  # train.prototxt line 30 (paper text: 20).
  config.optim.base_lr = 1e-3
  config.optim.schedule = 'step'  # solver.prototxt: step, gamma 0.1, stepsize 2000.
  config.optim.step_every = 2000
  config.optim.step_gamma = 0.1
  config.num_train_steps = 6000  # max_iter 6000.
  return config
