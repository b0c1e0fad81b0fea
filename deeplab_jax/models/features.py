"""What a backbone returns: named feature maps, each with its stride.

    features = backbone(x, train=train)   # Features
    features['out']                      # the last map (every backbone has it)
    features.strides                     # {'image': 1, 'pool1': 2, ..., 'out': 8}
    features.at_stride(4)                # the deepest map at stride 4

Names rather than strides alone, because strides repeat in DeepLab's
backbones (VGG's pool3, pool4 and output are all at stride 8 once the last
pools have stride 1); `at_stride` serves heads that ask by stride, as
smp's encoders and mmseg's `in_index` do. A backbone also says which names
and strides it will return before it runs (`feature_strides()`), so a
head's needs are checked when the model is built, not at the first step.
"""

from __future__ import annotations

from typing import Mapping

OUT = 'out'  # The name of every backbone's last map.


class Features(dict):
  """name -> BxHxWxC map in network order, with `strides` (name -> int)."""

  def __init__(self, maps: Mapping, strides: Mapping[str, int]):
    super().__init__(maps)
    missing = [name for name in self if name not in strides]
    if missing or OUT not in self:
      raise ValueError(f'features {list(self)} need a stride each and an {OUT!r} map')
    self.strides = {name: int(strides[name]) for name in self}

  def at_stride(self, stride: int):
    """The deepest map whose stride is `stride`."""
    names = [name for name in self if self.strides[name] == stride]
    if not names:
      raise KeyError(f'no feature at stride {stride}; have {self.strides}')
    return self[names[-1]]


def check_reads(part: str, reads, strides: Mapping[str, int]):
  """Raises a ValueError unless every name in `reads` is in `strides`."""
  missing = [name for name in reads if name not in strides]
  if missing:
    raise ValueError(f'{part} reads features {missing}, which the backbone does not '
                     f'return; it returns {dict(strides)}')
