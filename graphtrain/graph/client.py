"""A DGL ``DistGraph`` client inside a Ray worker (train worker, test task)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from graphtrain import storage
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.graph.partition import PART_CONFIG, IdMapping, read_info
from graphtrain.graph.sampling import DistGraphSource
from graphtrain.graph.servers import shares_hosts

DGL_CLIENT_ENV = {
    "DGL_ROLE": "client",
    "DGL_DIST_MODE": "distributed",
    "DGL_NUM_SERVER": "1",
    "DGL_NUM_SAMPLER": "0",
    # Fail within ~60 s (20 tries x 3 s) when a server is unreachable, not after 50 min.
    "DGL_DIST_MAX_TRY_TIMES": "20",
}


@contextlib.contextmanager
def dist_graph_client(ip_config: str, partitions_uri: str) -> Iterator[DistGraphSource]:
    """Connect to the graph servers listed in ``ip_config`` (DGL's "ip port" lines).

    Every client of a server group must enter and leave together: leaving calls
    ``exit_client``, a barrier across clients after which the servers shut down.
    """
    os.environ.update(DGL_CLIENT_ENV)
    dgl = import_dgl()
    with tempfile.TemporaryDirectory(prefix="graphtrain-client-") as workdir:
        path = os.path.join(workdir, "ip_config.txt")
        with open(path, "w") as f:
            f.write(ip_config)
        dgl.distributed.initialize(path)
    try:
        partitions_dir = storage.materialize(partitions_uri)
        graph_name = read_info(partitions_uri)["graph_name"]
        book, co_located = None, shares_hosts(ip_config)
        if co_located:
            # Servers run without shared memory: take the partition book from the
            # config; every neighbour request then goes over RPC.
            book = dgl.distributed.load_partition_book(os.path.join(partitions_dir, PART_CONFIG), 0)[0]
        graph = dgl.distributed.DistGraph(graph_name, gpb=book)
        yield DistGraphSource(graph, IdMapping.load(partitions_dir), has_kvstore=not co_located)
    finally:
        dgl.distributed.exit_client()
