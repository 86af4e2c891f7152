"""Ray job entrypoint: the whole pipeline (`graphtrain run`) on the cluster.

No logic of its own; arguments are those of `graphtrain run`. Submit with:

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/retrain.py --input s3://bucket/logs/ --source-domain books \
        --target-domain movies --workdir s3://bucket/runs/2026-11-29 --workers 8 --gpu
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
