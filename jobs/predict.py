"""Entry point for `ray job submit --working-dir . -- python jobs/predict.py ...`: same options as `eee-ray predict`.

Reads RAY_ADDRESS (set by the job submission) and MLFLOW_TRACKING_URI from the environment.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eee_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
