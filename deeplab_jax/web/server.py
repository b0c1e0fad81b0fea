"""The HTTP side of the page: GET / (the page), POST /segment (an image in, JSON out).

    python serve.py --config configs/shapes.py --workdir runs/shapes   # after `make demo`
    # open http://127.0.0.1:8000

POST /segment?crf=0|1 takes the file's bytes as the body and answers
{width, height, overlay and mask (PNG data URLs: the colour overlay, and the
palette PNG predict.py writes), legend [{index, name, colour, share}],
seconds {network, crf}, crf, notes}, or {error} with status 400 for a bad
upload (uploads.py) and 500 for anything else, never a stack trace. One
request runs at a time (the model is compiled per padded size once).
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
import traceback
import urllib.parse


from deeplab_jax.errors import UserError
from deeplab_jax.web import page
from deeplab_jax.web import uploads


def _png_data_url(array):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out = io.BytesIO()
  Image.fromarray(array).save(out, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(out.getvalue()).decode()


class App:
  """The page's model: a `Segmenter` and what the page says about it."""

  def __init__(self, segmenter, title='', subtitle=''):
    self.segmenter = segmenter
    self.title = title or 'try a model'
    self.subtitle = subtitle
    self.lock = threading.Lock()

  def segment(self, data, crf):
    """The JSON answer for one uploaded file (raises UserError for a bad one)."""
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    from deeplab_jax.data import files  # pylint: disable=import-outside-toplevel
    image, notes = uploads.decode(data)
    with self.lock:
      start = time.perf_counter()
      result = self.segmenter(image, crf=crf)
      total = time.perf_counter() - start
    crf_seconds = result.crf_seconds or 0.0
    palette = files.voc_palette()
    shares = result.class_shares()
    legend = [{'index': i, 'name': name, 'share': shares[name],
               'colour': '#%02x%02x%02x' % tuple(int(v) for v in palette[i])}
              for i, name in enumerate(result.class_names)]
    mask_png = files.encode_index_png(result.labels)
    return {
        'width': int(image.shape[1]), 'height': int(image.shape[0]),
        'overlay': _png_data_url(visualize.overlay(image, result.labels)),
        'mask': 'data:image/png;base64,' + base64.b64encode(mask_png).decode(),
        'legend': legend, 'crf': bool(crf), 'notes': notes,
        'seconds': {'network': total - crf_seconds, 'crf': crf_seconds if crf else None},
    }


def make_handler(app):
  class Handler(http.server.BaseHTTPRequestHandler):
    """GET / and POST /segment (see the module docstring)."""

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      pass  # Quiet: the terminal shows the URL and errors only.

    def _send(self, status, body, content_type):
      self.send_response(status)
      self.send_header('Content-Type', content_type)
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def _json(self, status, value):
      self._send(status, json.dumps(value).encode(), 'application/json')

    def do_GET(self):  # pylint: disable=invalid-name
      path = urllib.parse.urlparse(self.path).path
      if path in ('/', '/index.html'):
        self._send(200, page.render(app.title, app.subtitle).encode(), 'text/html; charset=utf-8')
      else:
        self._json(404, {'error': f'no page {path}'})

    def do_POST(self):  # pylint: disable=invalid-name
      url = urllib.parse.urlparse(self.path)
      if url.path != '/segment':
        self._json(404, {'error': f'no endpoint {url.path}'})
        return
      crf = urllib.parse.parse_qs(url.query).get('crf', ['0'])[0] in ('1', 'true')
      length = int(self.headers.get('Content-Length') or 0)
      if length > uploads.MAX_BYTES:
        self._json(400, {'error': f'the upload is {length / 2**20:.0f} MB, more than the '
                                  f'{uploads.MAX_BYTES // 2**20} MB this page accepts'})
        return
      data = self.rfile.read(length)
      try:
        self._json(200, app.segment(data, crf))
      except UserError as e:
        self._json(400, {'error': str(e)})
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        self._json(500, {'error': f'the server failed on this image ({type(e).__name__}: '
                                  f'{e}); the terminal running serve.py has the details'})

  return Handler


def start(app, host='127.0.0.1', port=8000):
  """A running server (in a daemon thread); its URL is `url(server)`."""
  server = http.server.ThreadingHTTPServer((host, port), make_handler(app))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  return server


def url(server):
  host, port = server.server_address[:2]
  return f'http://{host}:{port}/'


def serve(config, workdir, host='127.0.0.1', port=8000, step=None):
  """What serve.py runs: the page for `workdir`'s checkpoint, until Ctrl-C."""
  from deeplab_jax.segmenter import Segmenter  # pylint: disable=import-outside-toplevel
  segmenter = Segmenter.from_workdir(config, workdir, step)
  names = ', '.join(segmenter.class_names)
  app = App(segmenter, title=f'{config.model.backbone.name} + {config.model.head.name}',
            subtitle=f'{workdir}: {len(segmenter.class_names)} classes ({names})')
  app.segment(_warm_up_png(), crf=False)
  server = start(app, host, port)
  print(f'Serving {workdir} at {url(server)} (Ctrl-C stops)', flush=True)
  try:
    threading.Event().wait()
  except KeyboardInterrupt:
    server.shutdown()


def _warm_up_png():
  """A small PNG: compiling the network before the first visitor waits for it."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out = io.BytesIO()
  Image.new('RGB', (64, 64), (128, 128, 128)).save(out, format='PNG')
  return out.getvalue()
