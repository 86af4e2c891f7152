"""Entry point of one DGL graph server process (started by ``GraphServerActor``).

DGL reads its server settings from the environment (``DGL_ROLE=server``,
``DGL_SERVER_ID``, ``DGL_IP_CONFIG``, ...); ``initialize`` serves until every client
has called ``exit_client`` and then exits the process.
"""

import os


def main() -> None:
    from graphtrain.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    dgl.distributed.initialize(os.environ["DGL_IP_CONFIG"])


if __name__ == "__main__":
    main()
