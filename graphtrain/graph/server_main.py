"""Entry point of one DGL graph server process (started by ``GraphServerActor``).

This is the server branch of ``dgl.distributed.initialize``, written out so that
shared memory can be switched off: DGL publishes a server's partition in shared
memory under the graph name, which would collide when two partitions' servers share
one host (a simulated multi-node cluster). Settings come from DGL's environment
variables (``DGL_SERVER_ID``, ``DGL_IP_CONFIG``, ...) plus ``GRAPHTRAIN_SHARED_MEM``.
The process serves until every client has called ``exit_client``.
"""

import os


def main() -> None:
    from graphtrain.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    from dgl.distributed import rpc
    from dgl.distributed.dist_graph import DistGraphServer

    rpc.reset()
    server = DistGraphServer(
        int(os.environ["DGL_SERVER_ID"]),
        os.environ["DGL_IP_CONFIG"],
        int(os.environ["DGL_NUM_SERVER"]),
        int(os.environ["DGL_NUM_CLIENT"]),
        os.environ["DGL_CONF_PATH"],
        disable_shared_mem=os.environ.get("GRAPHTRAIN_SHARED_MEM", "1") == "0",
        graph_format=os.environ.get("DGL_GRAPH_FORMAT", "csc").split(","),
    )
    server.start()
    del dgl


if __name__ == "__main__":
    main()
