"""`torch.save` files as {key: float32 array} (needs PyTorch, imported here only).

    state = read_state_dict('deeplabv2_resnet101_msc-vocaug-20000.pth')
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.errors import UserError

# Keys under which training scripts store the state_dict, tried in this order.
STATE_DICT_KEYS = ('state_dict', 'model', 'model_state')


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: float32 array} from a `torch.save` file (needs PyTorch, CPU is enough).

      state = read_state_dict('deeplabv2_resnet101_msc-vocaug-20000.pth')

  Takes a plain state_dict or a dict holding one under 'state_dict', 'model'
  or 'model_state'; drops a DataParallel 'module.' prefix and anything that is
  not a floating-point tensor (e.g. BatchNorm's `num_batches_tracked`).
  Loads with `weights_only=True`: no code in the file is run.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f'reading .pth files needs PyTorch: pip install torch '
                    f'(CPU build is enough); cannot read {path}') from e
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except FileNotFoundError as e:
    raise UserError(f'no such file: {path}') from e
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f'{path}: torch.load(weights_only=True) cannot read it as a '
                    f'checkpoint of tensors: {first}') from e

  def tensors(obj):
    if not isinstance(obj, dict):
      return {}
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}

  found = tensors(loaded)
  if not found:
    for key in STATE_DICT_KEYS:
      found = tensors(loaded.get(key)) if isinstance(loaded, dict) else {}
      if found:
        break
  if not found:
    what = (f'top-level keys {sorted(map(str, loaded))[:10]}' if isinstance(loaded, dict)
            else f'a {type(loaded).__name__}')
    raise UserError(f'{path}: no state_dict found: it holds {what}; neither its top '
                    f'level nor {list(STATE_DICT_KEYS)} holds tensors')
  state = {k: v.detach().to(torch.float32).numpy() for k, v in found.items()
           if v.is_floating_point()}
  return strip_prefix(state, 'module.')


def strip_prefix(state: dict, prefix: str) -> dict:
  """`state` without `prefix` on its keys, when every key has it."""
  if state and all(k.startswith(prefix) for k in state):
    return {k[len(prefix):]: v for k, v in state.items()}
  return state
