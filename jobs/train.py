"""Ray job entrypoint: `graphtrain train` on the cluster; arguments are that subcommand's.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/train.py --help
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
