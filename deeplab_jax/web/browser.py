"""Driving the page in a real headless browser: the tests and the docs' screenshot.

    python -m deeplab_jax.web.browser --config configs/shapes.py --workdir runs/shapes \\
        --image photo.png --output docs/images/web_page.png [--crf]

Selenium with the system's Chromium and chromedriver (Debian: `apt-get
install chromium chromium-driver`; `pip install selenium`); no browser is
downloaded. `Page` uploads a file, waits for the answer, toggles the CRF,
reads the legend and downloads the mask as a user would.
"""

from __future__ import annotations

import os
import shutil
import time

from deeplab_jax.errors import UserError

CHROMIUM = ('chromium', 'chromium-browser', 'google-chrome')
DRIVERS = ('chromedriver',)


def find_browser():
  """(browser binary, chromedriver) on PATH, or None."""
  browser = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
  driver = next((shutil.which(d) for d in DRIVERS if shutil.which(d)), None)
  return (browser, driver) if browser and driver else None


class Page:
  """One headless Chromium window on the page at `url`."""

  def __init__(self, url, download_dir, width=1200, height=900):
    try:
      from selenium import webdriver  # pylint: disable=import-outside-toplevel
      from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise UserError('the browser driver needs selenium: pip install selenium') from e
    found = find_browser()
    if not found:
      raise UserError('no Chromium and chromedriver on PATH: apt-get install chromium '
                      'chromium-driver')
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ('--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', f'--window-size={width},{height}'):
      options.add_argument(argument)
    options.add_experimental_option('prefs', {
        'download.default_directory': os.path.abspath(download_dir),
        'download.prompt_for_download': False})
    self.download_dir = download_dir
    self.driver = webdriver.Chrome(service=Service(found[1]), options=options)
    self.driver.get(url)

  def close(self):
    self.driver.quit()

  def _by_id(self, element_id):
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    return self.driver.find_element(By.ID, element_id)

  def _wait_done(self, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
      if self.driver.execute_script('return document.body.dataset.state') == 'done':
        return
      time.sleep(0.1)
    raise TimeoutError('the page did not answer in time')

  def _run(self, action):
    self.driver.execute_script("document.body.dataset.state = 'waiting'")
    action()
    self._wait_done()

  def upload(self, path):
    self._run(lambda: self._by_id('file').send_keys(os.path.abspath(path)))

  def set_crf(self, on):
    box = self._by_id('crf')
    if box.is_selected() != bool(on):
      self._run(box.click)

  def error(self):
    return self._by_id('error').text

  def notes(self):
    return self._by_id('notes').text

  def timing(self):
    return self._by_id('timing').text

  def legend(self):
    """[(class name, share as the page shows it, exact share)] in class order."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    rows = self._by_id('legend').find_elements(By.CSS_SELECTOR, 'tbody tr')
    return [(r.find_element(By.CLASS_NAME, 'name').text,
             r.find_element(By.CLASS_NAME, 'share').text,
             float(r.get_attribute('data-share'))) for r in rows]

  def download(self, timeout=30):
    """Clicks the download link; the path of the file the browser saved."""
    link = self._by_id('download')
    name = link.get_attribute('download')
    target = os.path.join(self.download_dir, name)
    if os.path.exists(target):
      os.remove(target)
    link.click()
    deadline = time.time() + timeout
    while time.time() < deadline:
      if os.path.exists(target) and os.path.getsize(target) > 0:
        return target
      time.sleep(0.1)
    raise TimeoutError(f'no {name} downloaded into {self.download_dir}')

  def screenshot(self, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.driver.save_screenshot(path)


def main(argv):
  del argv
  import tempfile  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from deeplab_jax.segmenter import Segmenter  # pylint: disable=import-outside-toplevel
  from deeplab_jax.web import server  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  config = f.config
  app = server.App(Segmenter.from_workdir(config, f.workdir),
                   title=f'{config.model.backbone.name} + {config.model.head.name}',
                   subtitle=f'{f.workdir}')
  running = server.start(app, port=0)
  with tempfile.TemporaryDirectory() as downloads:
    page = Page(server.url(running), downloads, width=1000, height=560)
    try:
      page.upload(f.image)
      if f.crf:  # On, off, on: the shown time is the compiled CRF's, not its compilation.
        for on in (True, False, True):
          page.set_crf(on)
      page.screenshot(f.output)
      print(f'{f.output}: {page.timing()}')
    finally:
      page.close()
      running.shutdown()


if __name__ == '__main__':
  from absl import app as absl_app  # pylint: disable=ungrouped-imports
  from absl import flags as absl_flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file('config', None, 'The model\'s config.')
  absl_flags.DEFINE_string('workdir', None, 'Its checkpoint directory.')
  absl_flags.DEFINE_string('image', None, 'The image to upload.')
  absl_flags.DEFINE_string('output', None, 'Where the screenshot goes (PNG).')
  absl_flags.DEFINE_bool('crf', True, 'Switch the CRF on before the screenshot.')
  absl_flags.mark_flags_as_required(['config', 'workdir', 'image', 'output'])
  absl_app.run(main)
