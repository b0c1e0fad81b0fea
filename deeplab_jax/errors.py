"""The one exception type for mistakes a user can fix (bad config, paths, sizes).

Entry points print its message and exit non-zero instead of showing a traceback
from deep inside JAX or TensorFlow.
"""


class UserError(Exception):
  """Something in the user's config, flags or files is wrong; says what to do."""
