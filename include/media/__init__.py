"""Media encoding with ffmpeg (no Airflow imports).

- ``frames``: lossless Ut Video/Matroska clips exchanged between model stages (write, read, probe).
- ``transcode``: the web deliverables (WebM VP9 with alpha, animated WebP, GIF, poster PNG),
  streamed into caller-opened writers.
- ``runner``: runs the static ffmpeg binary of imageio-ffmpeg and moves bytes through it.
"""
