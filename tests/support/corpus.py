"""Real-world manifests from public projects' test suites, byte-exact (see corpus/SOURCES.md)."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
HLS_CORPUS = CORPUS / "hls"
DASH_CORPUS = CORPUS / "dash"
