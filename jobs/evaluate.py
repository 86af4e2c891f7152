"""Ray job entrypoint: `graphtrain evaluate` on the cluster; arguments are that subcommand's.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/evaluate.py --help
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
