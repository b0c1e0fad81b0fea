"""The try-a-model page in a real headless browser (Debian's Chromium through selenium).

Upload an image, read the legend and the shares, switch the CRF on, download
the mask PNG and compare it with predict.py's; bad uploads show a message.
Skipped only where no Chromium / chromedriver is installed (.ci/run installs
them); the upload checks without a browser always run.
"""

import io
import json
import os
import urllib.request

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from deeplab_jax import predict_lib
from deeplab_jax.errors import UserError
from deeplab_jax.testing import checkpoints
from deeplab_jax.segmenter import Segmenter
from deeplab_jax.web import browser
from deeplab_jax.web import server
from deeplab_jax.web import uploads


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  workdir = str(tmp_path_factory.mktemp('web_run'))
  checkpoints.write_initial(config, workdir)
  return config, workdir


@pytest.fixture(scope='module')
def site(run):
  config, workdir = run
  app = server.App(Segmenter.from_workdir(config, workdir, devices=None), title='tiny')
  running = server.start(app, port=0)
  yield server.url(running)
  running.shutdown()


def _png(array, mode=None):
  out = io.BytesIO()
  Image.fromarray(array, mode).save(out, format='PNG')
  return out.getvalue()


def _image(seed=0, size=(45, 70)):
  """An image with structure: shapes the model has a chance to see."""
  rng = np.random.RandomState(seed)
  image = np.full(size + (3,), 90, np.uint8)
  image[10:30, 15:50] = (220, 40, 40)
  return np.clip(image + rng.randint(0, 40, image.shape), 0, 255).astype(np.uint8)


def _post(url, data, crf=False):
  request = urllib.request.Request(f'{url}segment?crf={int(crf)}', data=data, method='POST')
  try:
    with urllib.request.urlopen(request) as response:
      return response.status, json.load(response)
  except urllib.error.HTTPError as e:
    return e.code, json.load(e)


def test_bad_uploads_get_a_message_not_a_trace(site):
  rgba = np.zeros((8, 8, 4), np.uint8)
  cases = [
      (b'not an image at all', 'is not an image this page can read'),
      (b'', 'is empty'),
      (_png(np.full((8, 8), 40000, np.uint16)), '16- or 32-bit'),
  ]
  for data, message in cases:
    status, answer = _post(site, data)
    assert status == 400 and message in answer['error'], answer
    assert 'Traceback' not in answer['error']
  status, answer = _post(site, _png(rgba))
  assert status == 200 and 'transparency' in answer['notes'][0]


def test_huge_uploads_are_refused(monkeypatch):
  monkeypatch.setattr(uploads, 'MAX_BYTES', 100)
  with pytest.raises(UserError, match='more than the 0 MB'):
    uploads.decode(b'x' * 101)
  big = Image.new('RGB', (9000, 6000))  # 54 megapixels, above segmenter.MAX_PIXELS.
  out = io.BytesIO()
  big.save(out, format='PNG')
  monkeypatch.setattr(uploads, 'MAX_BYTES', 10**9)
  with pytest.raises(UserError, match='megapixels'):
    uploads.decode(out.getvalue())


def test_the_answer_is_predict_pys(site, run, tmp_path):
  image = _image()
  path = tmp_path / 'in.png'
  Image.fromarray(image).save(path)
  status, answer = _post(site, path.read_bytes())
  assert status == 200
  mask = np.asarray(Image.open(io.BytesIO(__import__('base64').b64decode(
      answer['mask'].split(',', 1)[1]))))
  (written,) = predict_lib.predict(*run, [str(path)], str(tmp_path / 'out'), overlays=False)
  np.testing.assert_array_equal(mask, np.asarray(Image.open(written)))
  shares = {c['name']: c['share'] for c in answer['legend']}
  counts = np.bincount(mask.ravel(), minlength=len(shares))
  assert list(shares.values()) == pytest.approx(list(counts / mask.size))


@pytest.mark.skipif(browser.find_browser() is None,
                    reason='no chromium + chromedriver (apt-get install chromium chromium-driver)')
def test_in_a_headless_browser(site, run, tmp_path):
  image = _image(1)
  path = tmp_path / 'photo.png'
  Image.fromarray(image).save(path)
  (written,) = predict_lib.predict(*run, [str(path)], str(tmp_path / 'out'), overlays=False)
  want = np.asarray(Image.open(written))
  downloads = tmp_path / 'downloads'
  downloads.mkdir()
  page = browser.Page(site, str(downloads))
  try:
    page.upload(path)
    assert page.error() == ''
    legend = page.legend()
    names = [name for name, _, _ in legend]
    assert names == list(run[0].dataset.class_names)
    counts = np.bincount(want.ravel(), minlength=len(names))
    for (_, shown, exact), count in zip(legend, counts):
      assert exact == pytest.approx(count / want.size)
      assert shown == f'{100 * count / want.size:.2f} %'
    assert 'network' in page.timing() and 'CRF' not in page.timing()
    got = np.asarray(Image.open(page.download()))
    np.testing.assert_array_equal(got, want)

    page.set_crf(True)
    assert 'CRF' in page.timing()
    (crf_mask,) = predict_lib.predict(*run, [str(path)], str(tmp_path / 'crf'), crf=True,
                                      overlays=False)
    np.testing.assert_array_equal(np.asarray(Image.open(page.download())),
                                  np.asarray(Image.open(crf_mask)))
    page.screenshot(os.environ.get('DEEPLAB_WEB_SCREENSHOT', str(tmp_path / 'page.png')))

    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'this is text')
    page.upload(bad)
    assert 'is not an image this page can read' in page.error()
  finally:
    page.close()
