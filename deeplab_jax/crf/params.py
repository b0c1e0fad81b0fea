"""Parameters of the fully connected CRF (Kraehenbuehl & Koltun 2011) and the
values the DeepLab papers published.

    from deeplab_jax.crf import params as crf_params
    p = crf_params.RESNET_V2                        # w1=4, sa=67, sb=3, w2=3, sg=1
    p = crf_params.PRESETS['vgg_deeplab_v1']        # each released model's own
    p = dataclasses.replace(p, normalization='symmetric', iterations=5)
    p = crf_params.from_config(config.crf)          # a ConfigDict, same field names

Energy of a labelling x (Potts: a pair pays only when its labels differ):

    E(x) = sum_i U_i(x_i)
         + sum_{i<j} [x_i != x_j] * (
               w1 * exp(-|p_i - p_j|^2 / (2 sa^2) - |I_i - I_j|^2 / (2 sb^2))   # bilateral
             + w2 * exp(-|p_i - p_j|^2 / (2 sg^2)))                            # spatial

with p_i a pixel's (x, y) position in pixels, I_i its (r, g, b) colour in 0..255,
sa = sigma_alpha, sb = sigma_beta, sg = sigma_gamma, and U_i the unary energy
from the network's output (see `unary`). Mean-field inference runs
`iterations` updates Q <- softmax(-U + sum_k w_k Kn_k Q), Kn_k being kernel k
normalised as `normalization` says.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from deeplab_jax.errors import UserError

NORMALIZATIONS = ('symmetric', 'before', 'after')
UNARIES = ('logits', 'probs')
# Probabilities are clipped to [PROB_CLIP, 1] before the log, as
# pydensecrf.utils.unary_from_softmax does by default.
PROB_CLIP = 1e-5


@dataclasses.dataclass(frozen=True)
class CRFParams:
  """One dense CRF's parameters (see the module docstring for the energy).

  Attributes:
    w1: weight of the bilateral (appearance) kernel
      w1 * exp(-|p_i-p_j|^2 / (2 sigma_alpha^2) - |I_i-I_j|^2 / (2 sigma_beta^2)).
    sigma_alpha: spatial standard deviation of the bilateral kernel, pixels.
    sigma_beta: colour standard deviation of the bilateral kernel, in 0..255
      RGB units.
    w2: weight of the spatial (smoothness) kernel
      w2 * exp(-|p_i-p_j|^2 / (2 sigma_gamma^2)).
    sigma_gamma: standard deviation of the spatial kernel, pixels.
    iterations: mean-field iterations (the papers: 10). 0 returns the
      softmax of -U, the unary alone.
    normalization: how each kernel K (N x N, D = diag(K 1)) is normalised
      before it passes messages: 'after' D^-1 K (the default: NORMALIZE_AFTER,
      DeepLab's 2011 C++ densecrf, with which every preset below was
      tuned), 'symmetric' D^-1/2 K D^-1/2 (pydensecrf's own default,
      NORMALIZE_SYMMETRIC), 'before' K D^-1 (NORMALIZE_BEFORE).
    unary: what the scores handed to the CRF are: 'logits' (U = -logits; the
      softmax is shift-invariant, so this equals -log softmax(logits)) or
      'probs' (U = -log(clip(p, PROB_CLIP, 1)), as
      pydensecrf.utils.unary_from_softmax).
  """

  w1: float
  sigma_alpha: float
  sigma_beta: float
  w2: float
  sigma_gamma: float
  iterations: int = 10
  normalization: str = 'after'
  unary: str = 'logits'

  def __post_init__(self):
    for name in ('sigma_alpha', 'sigma_beta', 'sigma_gamma'):
      if not getattr(self, name) > 0:
        raise UserError(f'crf.{name} must be > 0, got {getattr(self, name)!r}')
    for name in ('w1', 'w2'):
      if not getattr(self, name) >= 0:
        raise UserError(f'crf.{name} must be >= 0, got {getattr(self, name)!r}')
    if int(self.iterations) != self.iterations or self.iterations < 0:
      raise UserError(f'crf.iterations must be an integer >= 0, got {self.iterations!r}')
    if self.normalization not in NORMALIZATIONS:
      raise UserError(
          f'crf.normalization {self.normalization!r} is not one of {NORMALIZATIONS}')
    if self.unary not in UNARIES:
      raise UserError(f'crf.unary {self.unary!r} is not one of {UNARIES}')


# One preset per released model, (w1, sigma_alpha, sigma_beta, w2, sigma_gamma),
# each with where it was read. The papers cross-validated w1, sigma_alpha,
# sigma_beta per model on 100 val images, w2 = sigma_gamma = 3 (v1).
#
# DeepLab v2 ResNet-101: the PyTorch port's config (kazuto1011/deeplab-pytorch
# configs/voc12.yaml, CRF section: BI_W 4, BI_XY_STD 67, BI_RGB_STD 3,
# POS_W 3, POS_XY_STD 1); the v2 release's own scripts were not found.
RESNET_V2 = CRFParams(4, 67, 3, 3, 1)
# v1 DeepLab-LargeFOV: the release's exper/run_densecrf.sh
# (corenel/deeplab-public: Bi_W=4, Bi_X_STD=49, Bi_R_STD=5, POS_W=3,
# POS_X_STD=3). An unofficial copy of SetupEnv.m lists 4 / 121 / 5 for an
# internal model "vgg128_noup_pool3_20M_largewin3", the project's value
# before; the release's script is what its users ran. Also used for the v2
# VGG configs, whose own values were not found.
VGG_LARGEFOV = CRFParams(4, 49, 5, 3, 3)
# v1 DeepLab (vgg128_noup, fc6 4x4): matlab/my_script/SetupEnv.m in
# TheLegendAli/DeepLab-Context ("vgg128_noup (not optimized well), aka
# DeepLab: bi_w = 5, bi_x_std = 50, bi_r_std = 10"; pos_w = pos_x_std = 3,
# its defaults).
VGG_DEEPLAB_V1 = CRFParams(5, 50, 10, 3, 3)
# v1 DeepLab-MSc (vgg128_ms_pool3): the same SetupEnv.m ("vgg128_ms_pool3,
# aka DeepLab-MSc: bi_w = 3, bi_x_std = 95, bi_r_std = 3"). No file found
# gives MSc-LargeFOV's own values (its config uses VGG_LARGEFOV).
VGG_MSC = CRFParams(3, 95, 3, 3, 3)
PRESETS = {'resnet_v2': RESNET_V2, 'vgg_largefov': VGG_LARGEFOV,
           'vgg_deeplab_v1': VGG_DEEPLAB_V1, 'vgg_msc': VGG_MSC}

_FIELDS = tuple(f.name for f in dataclasses.fields(CRFParams))


def from_config(crf_config: Any) -> CRFParams:
  """CRFParams from a ConfigDict (or dict) whose keys are CRFParams' fields.

  Fields left out take CRFParams' defaults (iterations, normalization, unary);
  w1, sigma_alpha, sigma_beta, w2 and sigma_gamma are required.

    config.crf = ml_collections.ConfigDict(dict(
        w1=4, sigma_alpha=67, sigma_beta=3, w2=3, sigma_gamma=1))
    params = from_config(config.crf)

  Args:
    crf_config: an ml_collections.ConfigDict, FrozenConfigDict or a mapping.

  Returns:
    The CRFParams.

  Raises:
    UserError: a field CRFParams does not have, a missing required field, or
      a value out of range.
  """
  if hasattr(crf_config, 'to_dict'):
    values = crf_config.to_dict()
  else:
    values = dict(crf_config)
  unknown = sorted(set(values) - set(_FIELDS))
  if unknown:
    raise UserError(f'crf config fields {unknown} are not CRF parameters; known: {_FIELDS}')
  missing = [f.name for f in dataclasses.fields(CRFParams)
             if f.default is dataclasses.MISSING and f.name not in values]
  if missing:
    raise UserError(f'crf config is missing {missing}')
  return CRFParams(**values)
