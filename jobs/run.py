"""Ray job entrypoint: `graphtrain run` on the cluster; arguments are that subcommand's.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/run.py --help
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
