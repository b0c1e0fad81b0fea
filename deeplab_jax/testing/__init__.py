"""Test support, shipped for tests and benchmarks only (nothing else imports it).

  fake_archives    VOC 2012 / SBD archives in the official layouts, generated
  fake_cityscapes  Cityscapes' zip files, generated
  fake_caffe       .caffemodel files in each DeepLab release's layout
  scenes           synthetic images with noisy unaries for the CRF
  torch_deeplab    the PyTorch twin of the paper models (imports torch): a
                   numerical check of the same design, not of fidelity
"""
