"""`lokki-sam` with the store path from before issue 15 (bench/baseline.py): `python bench/baseline_run.py run ...`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline

from lokki_sam.cli import main

if __name__ == "__main__":
    baseline.use_baseline()
    main()
