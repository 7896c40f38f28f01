"""Pure-Python MP4 → MPEG-TS / fMP4 remuxing: no I/O, no network, no subprocess.

`boxes` finds the `moov` from partial reads, `movie` turns it into compact sample tables
(`tables` and `chunks`: per-sample columns computed from the file's own run-length and
chunk tables, only where asked), `blob` is their cacheable form, `plan` cuts those into HLS
segments with the byte ranges each needs, and `ts` / `fmp4` make a segment from those
bytes. Every failure is a `RemuxError` with a one-line reason.
"""
