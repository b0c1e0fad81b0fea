"""Config sections every config shares: `config.eval` and `config.crf`.

    config.eval = common.evaluation()
    config.crf = common.crf(crf_params.RESNET_V2)

Override them like any field: `--config.eval.flip=True`,
`--config.eval.scales=0.5,0.75,1.0,1.25,1.5`, `--config.crf.w1=5`.
"""

import dataclasses

import ml_collections


def evaluation():
  """`config.eval`: how evaluate.py / predict.py infer, score and write."""
  e = ml_collections.ConfigDict()
  # Inference (deeplab_jax/inference.py). Logits are upsampled bilinearly to
  # the image size (model.align_corners' convention) before argmax and CRF.
  e.mode = 'whole'  # 'whole': each image padded to input.eval_size, one pass; 'sliding': windows.
  e.window = (513, 513)  # mode 'sliding': window (height, width), pixels.
  e.stride = (342, 342)  # mode 'sliding': step between windows; overlapping logits averaged.
  e.scales = (1.0,)  # Test-time scales, logits averaged (not the paper's protocol: its MSC
  # is model.input_scales = 1, 0.75, 0.5 inside the network, max-fused; more scales add on top).
  e.flip = False  # Also infer the mirrored image and average.
  # Pixels cropped at the top / left of the score map zoomed x8 (corners
  # aligned) before it meets the image: the test prototxt's fc8_crop
  # `pad_beg`, negated (v1 DeepLab: 7); 0 = a plain resize to the image size.
  e.score_offset = 0
  # Dense CRF after the network (config.crf): scores before AND after in one run.
  e.crf = False  # evaluate.py --crf sets it.
  e.crf_backend = 'jax'  # 'jax' (batched, on the accelerator) or 'host' (pydensecrf2, all cores).
  e.crf_processes = 0  # 'host' backend: worker processes (0 = one per core).
  # Boundary accuracy: mIoU within bands of these widths (px) around void /
  # boundary pixels (the paper's trimap figure); () = skip.
  e.trimap_widths = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40)
  # Boundary pixels: 'void' (VOC's 5 px void outlines, the papers'), 'edges'
  # (label changes; for ground truth whose void marks regions, e.g. Cityscapes)
  # or 'auto' (void if an image has any, else edges).
  e.trimap_boundary = 'auto'
  # What is written to <output_dir> (default <workdir>/eval/<split>_step<step>).
  e.num_overlays = 8  # Colour overlays (image | prediction | ground truth) of the first N images.
  e.save_predictions = False  # Every prediction as a VOC palette PNG (test-server format).
  e.save_logits = 0  # Save the first N images' logits (float16, image size) for CRF re-runs; -1 = all.
  # CRF parameter search (python -m deeplab_jax.crf.search): grid over w1,
  # sigma_alpha, sigma_beta on saved logits, coarse then fine (the papers').
  e.search_images = 100  # Held-out images the search scores.
  return e


def crf(preset, normalization='after'):
  """`config.crf`: the dense CRF's parameters (fields of crf.params.CRFParams).

  `normalization='after'` (D^-1 K, DeepLab's 2011 C++ densecrf) is what the
  published parameters were tuned with; pydensecrf's default is 'symmetric'.
  """
  values = dataclasses.asdict(preset)
  values['normalization'] = normalization
  # w1 / sigma_alpha / sigma_beta: bilateral (appearance) kernel; w2 /
  # sigma_gamma: spatial smoothness; iterations: mean-field steps; unary:
  # 'logits' (U = -logits) or 'probs' (U = -log p).
  return ml_collections.ConfigDict(values)
