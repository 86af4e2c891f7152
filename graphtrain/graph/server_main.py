"""Entry point of one DGL graph server process (started by ``GraphServerActor``).

The server branch of ``dgl.distributed.initialize``, spelled out so that DGL is
imported through ``dgl_compat`` and what the server runs with is visible in one
place. Settings come from DGL's environment variables (``DGL_SERVER_ID``,
``DGL_IP_CONFIG``, ...). The server publishes its partition in shared memory under
the graph name of ``DGL_CONF_PATH``'s config, and serves until every client has
called ``exit_client``.
"""

import os


def main() -> None:
    from graphtrain.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    from dgl.distributed import rpc
    from dgl.distributed.dist_graph import DistGraphServer

    from graphtrain.graph import typed_csc

    rpc.reset()
    server = DistGraphServer(
        int(os.environ["DGL_SERVER_ID"]),
        os.environ["DGL_IP_CONFIG"],
        int(os.environ["DGL_NUM_SERVER"]),
        int(os.environ["DGL_NUM_CLIENT"]),
        os.environ["DGL_CONF_PATH"],
        graph_format=os.environ.get("DGL_GRAPH_FORMAT", "csc").split(","),
    )
    # per-type sampling: the request's handler, and the partition's index built now
    # rather than on the first request
    typed_csc.request_class()
    if server.client_g is not None:  # None on backup servers, which we do not start
        typed_csc.typed_in_csc(server.client_g, server.gpb)
    server.start()
    del dgl


if __name__ == "__main__":
    main()
