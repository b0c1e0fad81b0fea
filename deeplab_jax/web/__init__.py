"""A local web page to try a model: `python serve.py --config C --workdir W`.

`server.py` (the HTTP endpoints, Python's own http.server: no extra
dependency), `uploads.py` (what an uploaded file may be, with the messages
the page shows), `page.py` (the page: HTML, CSS and a little JavaScript).
"""
