"""Pure-Python MP4 → MPEG-TS / fMP4 remuxing: no I/O, no network, no subprocess.

`boxes` finds the `moov` from partial reads, `movie` turns it into compact sample tables,
`plan` cuts those into HLS segments with the byte ranges each needs, and `ts` / `fmp4` make
a segment from those bytes. Every failure is a `RemuxError` with a one-line reason.
"""
