"""Ray job entrypoint: `graphtrain export` on the cluster; arguments are that subcommand's.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/export.py --help
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
