"""Ray job entrypoint: `graphtrain retrain` (new logs -> gated candidate -> registry).

No logic of its own; arguments are those of `graphtrain retrain`. Submit with:

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/retrain.py --registry s3://bucket/registry --input s3://bucket/logs/ \
        --source-domain books --target-domain movies --workdir s3://bucket/runs/2026-12-04 --workers 8 --gpu
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
