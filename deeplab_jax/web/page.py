"""The page `server.py` serves: pick or drop an image, see the mask over it.

Plain HTML, CSS and JavaScript in one string (no build step, no CDN: it
works offline). Element ids the browser test reads: #file, #drop, #crf,
#overlay, #legend (rows: .name, .share), #timing, #download, #error, #notes.
"""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>deeplab_jax: __TITLE__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
 h1 { font-size: 20px; margin: 0 0 4px; }
 .sub { color: #666; margin-bottom: 16px; font-size: 14px; }
 #drop { border: 2px dashed #999; border-radius: 8px; padding: 18px; text-align: center;
         color: #555; margin-bottom: 12px; }
 #drop.over { background: #eef5ff; border-color: #36c; }
 .controls { display: flex; gap: 18px; align-items: center; margin-bottom: 12px; }
 .row { display: flex; gap: 24px; align-items: flex-start; }
 #overlay { width: 480px; height: auto; image-rendering: pixelated;
            border: 1px solid #ddd; display: none; }
 table { border-collapse: collapse; font-size: 14px; }
 td, th { padding: 3px 8px; text-align: left; }
 td.share { text-align: right; font-variant-numeric: tabular-nums; }
 .swatch { width: 14px; height: 14px; display: inline-block; border: 1px solid #0003;
           vertical-align: middle; }
 #error { color: #b00; font-weight: 600; margin: 8px 0; white-space: pre-wrap; }
 #notes { color: #a60; margin: 8px 0; }
 #timing { color: #444; font-size: 14px; }
 a.button { padding: 4px 10px; border: 1px solid #36c; border-radius: 4px; color: #36c;
            text-decoration: none; }
 a.button.disabled { pointer-events: none; color: #aaa; border-color: #ccc; }
</style>
</head>
<body>
<h1>deeplab_jax: __TITLE__</h1>
<div class="sub">__SUBTITLE__</div>
<div id="drop">Drop an image here, or <input type="file" id="file" accept="image/*"></div>
<div class="controls">
 <label><input type="checkbox" id="crf"> dense CRF</label>
 <span id="timing"></span>
 <a id="download" class="button disabled" download="mask.png" href="#">download mask PNG</a>
</div>
<div id="error"></div>
<div id="notes"></div>
<div class="row">
 <img id="overlay" alt="prediction over the image">
 <table id="legend"><thead><tr><th></th><th>class</th><th>pixels</th></tr></thead>
 <tbody></tbody></table>
</div>
<script>
let current = null, name = 'image';
const $ = (id) => document.getElementById(id);
async function run() {
  if (!current) return;
  $('error').textContent = ''; $('notes').textContent = '';
  $('timing').textContent = 'segmenting...';
  $('download').classList.add('disabled');
  document.body.dataset.state = 'busy';
  try {
    const response = await fetch('segment?crf=' + ($('crf').checked ? 1 : 0),
                                 {method: 'POST', body: current});
    const result = await response.json();
    if (!response.ok) throw new Error(result.error || response.statusText);
    show(result);
  } catch (e) {
    $('error').textContent = String(e.message || e);
    $('timing').textContent = '';
    $('overlay').style.display = 'none';
    $('legend').querySelector('tbody').innerHTML = '';
  }
  document.body.dataset.state = 'done';
}
function show(r) {
  $('overlay').src = r.overlay; $('overlay').style.display = 'block';
  const body = $('legend').querySelector('tbody'); body.innerHTML = '';
  for (const c of r.legend) {
    const row = document.createElement('tr');
    row.className = c.share > 0 ? 'present' : 'absent';
    row.innerHTML = '<td><span class="swatch"></span></td><td class="name"></td>' +
                    '<td class="share"></td>';
    row.querySelector('.swatch').style.background = c.colour;
    row.querySelector('.name').textContent = c.name;
    row.querySelector('.share').textContent = (100 * c.share).toFixed(2) + ' %';
    row.dataset.share = c.share;
    body.appendChild(row);
  }
  let t = r.width + 'x' + r.height + ': network ' + (1000 * r.seconds.network).toFixed(0) + ' ms';
  if (r.crf) t += ', CRF ' + (1000 * r.seconds.crf).toFixed(0) + ' ms';
  $('timing').textContent = t;
  $('timing').dataset.crf = r.crf ? '1' : '0';
  $('notes').textContent = r.notes.join('; ');
  $('download').href = r.mask;
  $('download').download = name.replace(/\\.[^.]*$/, '') + '_mask.png';
  $('download').classList.remove('disabled');
}
function take(file) { if (!file) return; current = file; name = file.name; run(); }
$('file').addEventListener('change', (e) => take(e.target.files[0]));
$('crf').addEventListener('change', run);
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over'); take(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
"""


def render(title, subtitle):
  """The page with its title lines filled in (HTML-escaped)."""
  import html  # pylint: disable=import-outside-toplevel
  return (HTML.replace('__TITLE__', html.escape(title))
          .replace('__SUBTITLE__', html.escape(subtitle)))
