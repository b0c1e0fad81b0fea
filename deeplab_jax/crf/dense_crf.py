"""The fully connected CRF's mean-field inference in JAX (batched, jittable,
differentiable), with the same energy and updates as Kraehenbuehl & Koltun's
densecrf (pydensecrf2, `host.py`).

    q_BxHxWxC = mean_field(images_BxHxWx3, logits_BxHxWxC, valid_BxHxW, params)

Energy: unary U_i(l) (the negative logits, or -log of clipped probabilities)
plus Potts pairwise terms with two kernels,
    w1 exp(-|p_i-p_j|^2 / 2 sa^2 - |I_i-I_j|^2 / 2 sb^2) + w2 exp(-|p_i-p_j|^2 / 2 sg^2).
Each iteration (as densecrf): Q = softmax(-U + sum_k w_k Kn_k Q), where the
message includes each pixel's own term and Kn_k is kernel k normalised as
`params.normalization` says: 'symmetric' D^-1/2 K D^-1/2 (pydensecrf's
default), 'before' K D^-1, 'after' D^-1 K (DeepLab's 2011 C++, with which the
published parameters were tuned); D = K 1.

Both kernels filter on the permutohedral lattice (`lattice.py`, built once
per image and kernel, on the device, as densecrf does: `method='lattice'`),
or are exact O(N^2) sums (`method='exact'`, tiny images and tests only). Padding (valid False)
takes no part: it neither sends nor receives messages, and its output is the
unary's softmax.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax.crf import lattice as lattice_lib
from deeplab_jax.crf import packing as packing_lib
from deeplab_jax.crf.params import CRFParams, PROB_CLIP

_EPS = 1e-20  # densecrf's guard in its normalisers.


def unary_energy(scores_BxHxWxC, kind='logits', clip=PROB_CLIP):
  """U from the network's output: -logits, or -log(max(p, clip)) for probabilities."""
  if kind == 'logits':
    return -scores_BxHxWxC.astype(jnp.float32)
  if kind == 'probs':
    return -jnp.log(jnp.maximum(scores_BxHxWxC.astype(jnp.float32), clip))
  raise ValueError(f"unary {kind!r}: 'logits' or 'probs'")


def _positions(height, width):
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing='ij')
  return jnp.stack([cols, rows], -1).reshape(-1, 2)


def bilateral_features(image_HxWx3, sigma_alpha, sigma_beta):
  """(x, y) / sigma_alpha and (r, g, b) / sigma_beta per pixel: N x 5.

  Colours are clipped to 0-255 (float images from augmentation may stray),
  the range `bilateral_packing` assumes."""
  h, w = image_HxWx3.shape[:2]
  colours = jnp.clip(image_HxWx3.reshape(-1, 3).astype(jnp.float32), 0.0, 255.0)
  return jnp.concatenate([_positions(h, w) / sigma_alpha, colours / sigma_beta], -1)


def bilateral_packing(height, width, params: CRFParams):
  """The bilateral lattice's static uint32 `packing.Packing` for images of
  this size (`bilateral_features`' range), or None where the range is too
  wide (e.g. sigma_beta 1: then D-key sorts, slower on GPUs)."""
  high = [(width - 1) / params.sigma_alpha, (height - 1) / params.sigma_alpha] + [
      255.0 / params.sigma_beta] * 3
  return packing_lib.packing([0.0] * 5, high)


def spatial_packing(height, width, sigma):
  """The spatial lattice's `packing.Packing` (spatial='lattice')."""
  return packing_lib.packing([0.0, 0.0], [(width - 1) / sigma, (height - 1) / sigma])


def per_image_bilateral(fn, images_BxHxWx3, valid_BxHxW, params: CRFParams):
  """fn(features_NxD, valid_N, packing) vmapped over a padded batch, with
  each image's bilateral features and the batch size's packing."""
  pack = bilateral_packing(*images_BxHxWx3.shape[1:3], params)

  def one(image_HxWx3, valid_HxW):
    features = bilateral_features(image_HxWx3, params.sigma_alpha, params.sigma_beta)
    return fn(features, valid_HxW.reshape(-1), pack)
  return jax.vmap(one)(images_BxHxWx3, valid_BxHxW)


def _gaussian_taps(sigma, truncate):
  radius = max(int(math.ceil(truncate * sigma)), 1)
  offsets = np.arange(-radius, radius + 1)
  return radius, np.exp(-0.5 * (offsets / sigma) ** 2).astype(np.float32)


def grid_gaussian_filter(values_HxWxC, sigma, valid_HxW=None, truncate=4.0):
  """sum_j exp(-|p_i - p_j|^2 / (2 sigma^2)) values_j over an image's pixel grid.

  The spatial kernel exactly (no lattice): a separable Gaussian, one 1-D
  convolution along the rows and one along the columns, truncated at
  `truncate` sigma (taps beyond it are below exp(-truncate^2 / 2) = 3e-4 of
  the centre's for the default 4), zero outside the image.

  Args:
    values_HxWxC: float values per pixel.
    sigma: the kernel's standard deviation in pixels (static).
    valid_HxW: optional bool mask; invalid pixels neither give nor receive
      (their output is 0).
    truncate: static truncation radius in units of sigma.

  Returns:
    out_HxWxC (float32).
  """
  radius, taps = _gaussian_taps(float(sigma), truncate)
  values_HxWxC = values_HxWxC.astype(jnp.float32)
  if valid_HxW is not None:
    values_HxWxC = values_HxWxC * valid_HxW[..., None].astype(jnp.float32)
  h, w, _ = values_HxWxC.shape

  def along(x, axis, size):
    pad = [(0, 0)] * 3
    pad[axis] = (radius, radius)
    x_pad = jnp.pad(x, pad)
    out = None
    for k, tap in enumerate(taps):
      part = tap * jax.lax.slice_in_dim(x_pad, k, k + size, axis=axis)
      out = part if out is None else out + part
    return out

  out = along(along(values_HxWxC, 1, w), 0, h)
  if valid_HxW is not None:
    out = out * valid_HxW[..., None].astype(jnp.float32)
  return out


def _normalised(filter_fn, norm_N, mode):
  """Kn from the plain filter K and D = K 1 (see the module docstring)."""
  if mode == 'symmetric':
    scale = jax.lax.rsqrt(norm_N + _EPS)
    return lambda v: scale[:, None] * filter_fn(scale[:, None] * v)
  scale = 1.0 / (norm_N + _EPS)
  if mode == 'before':
    return lambda v: filter_fn(scale[:, None] * v)
  if mode == 'after':
    return lambda v: scale[:, None] * filter_fn(v)
  raise ValueError(f"normalization {mode!r}: 'symmetric', 'before' or 'after'")


def _one_image(image_HxWx3, unary_HxWxC, valid_HxW, sorted_vertices, bilateral_lattice,
               weights, params, method, spatial_method, max_points):
  h, w, c = unary_HxWxC.shape
  valid_N = valid_HxW.reshape(-1)
  mask_N1 = valid_N[:, None].astype(jnp.float32)
  features = bilateral_features(image_HxWx3, params.sigma_alpha, params.sigma_beta)
  spatial_features = _positions(h, w) / params.sigma_gamma
  if method == 'lattice':
    if bilateral_lattice is None:
      if sorted_vertices is None:
        sorted_vertices = lattice_lib.sort_vertices(features, valid_N,
                                                    bilateral_packing(h, w, params))
      bilateral_lattice = lattice_lib.build_sorted(sorted_vertices, max_points)
    bilateral = functools.partial(lattice_lib.filter, bilateral_lattice)
    if spatial_method == 'grid':
      spatial = lambda v: grid_gaussian_filter(
          v.reshape(h, w, -1), params.sigma_gamma, valid_HxW).reshape(h * w, -1)
    elif spatial_method == 'lattice':
      spatial = functools.partial(lattice_lib.filter, lattice_lib.build(
          spatial_features, valid_N, pack=spatial_packing(h, w, params.sigma_gamma)))
    else:
      raise ValueError(f"spatial {spatial_method!r}: 'grid' or 'lattice'")
  elif method == 'exact':
    bilateral = lambda v: lattice_lib.gaussian_filter_exact(features, v, valid_N)
    spatial = lambda v: lattice_lib.gaussian_filter_exact(spatial_features, v, valid_N)
  else:
    raise ValueError(f"method {method!r}: 'lattice' or 'exact'")
  ones = mask_N1
  w1, w2 = weights
  kernels = [(w1, _normalised(bilateral, bilateral(ones)[:, 0], params.normalization)),
             (w2, _normalised(spatial, spatial(ones)[:, 0], params.normalization))]
  unary = unary_HxWxC.reshape(-1, c)

  def step(q, _):
    message = -unary
    for weight, kernel in kernels:
      message = message + weight * kernel(q * mask_N1)
    q = jax.nn.softmax(jnp.where(mask_N1 > 0, message, -unary), axis=-1)
    return q, None

  q = jax.nn.softmax(-unary, axis=-1)
  q, _ = jax.lax.scan(step, q, None, length=params.iterations)
  return q.reshape(h, w, c)


def mean_field(images_BxHxWx3, unary_BxHxWxC, valid_BxHxW, params: CRFParams,
               method='lattice', weights=None, spatial='grid', max_points=None,
               sorted_vertices=None, lattices=None):
  """Q (B x H x W x C, float32) after `params.iterations` mean-field updates.

  `unary` is the energy U (see `unary_energy`); images are RGB 0-255; valid
  marks real pixels (False: padding). Call it under `jax.jit` with `params`,
  `method`, `spatial` and `max_points` static. `weights` = (w1, w2), possibly
  traced, replaces params.w1 / params.w2: the result is differentiable in
  them and in U.

  method='lattice': the bilateral kernel on the permutohedral lattice; the
  spatial kernel exactly on the pixel grid (`grid_gaussian_filter`,
  spatial='grid', the default: far cheaper) or on a lattice as densecrf does
  (spatial='lattice': Q within 1e-3 of pydensecrf2's; 'grid' changes
  pydensecrf2's label at under 0.1% of pixels, its Q by up to ~0.15 there).
  max_points: the bilateral lattice's static size (default N * 6, always
  enough; the blur's cost is proportional to it). sorted_vertices: the
  bilateral lattice's first half, `sort_bilateral_vertices`, if already
  computed (it tells how many points each image needs: `lattice.bucket` of
  their maximum is a tight max_points; `sizing.py` does this on
  accelerators). lattices: the bilateral lattices themselves (a batched
  `lattice.Lattice`), e.g. from `lattice_host.build_host` (`sizing.py` does
  this on a CPU, where numpy builds them several times faster than XLA).
  method='exact': both kernels as O(N^2) sums (tiny images, tests).
  """
  weights = (params.w1, params.w2) if weights is None else weights
  fn = lambda im, u, v, sv, lat: _one_image(im, u, v, sv, lat, weights, params, method,
                                            spatial, max_points)
  return jax.vmap(fn)(images_BxHxWx3, unary_BxHxWxC.astype(jnp.float32), valid_BxHxW,
                      sorted_vertices, lattices)


def sort_bilateral_vertices(images_BxHxWx3, valid_BxHxW, params: CRFParams):
  """The bilateral lattices' first half (`lattice.SortedVertices`, batched).

  Its `num_points` (B) is how many lattice points each image needs.
  """
  return per_image_bilateral(lattice_lib.sort_vertices, images_BxHxWx3, valid_BxHxW, params)
