"""Run in a subprocess by tests/test_robustness.py (in the background, tests/_background.py): ``eee-ray ingest`` on
the first FILES cines of ECHO_DIR into OUT_DIR, with the local Ray it starts (in the caller's RAY_TMPDIR), and a real
Ctrl-C (SIGINT to its process group) once its first manifest part is on disk. Prints one JSON line (``CTRLC {...}``:
the interrupted run's exit code and output) and exits; the caller kills what is left of that Ray by its temp dir.

Usage: python tests/_ctrl_c_run.py ECHO_DIR OUT_DIR FILES
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _platform_helpers import interrupt_ingest  # noqa: E402

if __name__ == "__main__":
    rc, log = interrupt_ingest(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), dict(os.environ))
    print("CTRLC " + json.dumps({"rc": rc, "log": log}), flush=True)
