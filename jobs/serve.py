"""Ray job entrypoint: serve an exported model artifact over HTTP (`graphtrain serve`).

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/serve.py --registry s3://bucket/registry --host 0.0.0.0 --port 8000
"""

import sys

from graphtrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
