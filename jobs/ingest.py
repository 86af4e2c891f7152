"""Ray job entrypoint: `graphtrain ingest` on the cluster; arguments are that subcommand's.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/ingest.py --help
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
