"""A DGL ``DistGraph`` client inside a Ray worker (train worker, test task)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import tempfile
from typing import Iterator

from graphtrain import storage
from graphtrain.errors import GraphServerError
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.graph.partition import PART_CONFIG, IdMapping, read_info, reader_skips
from graphtrain.graph.sampling import DistGraphSource
from graphtrain.graph.servers import ServerEndpoints
from graphtrain.graph.typed_csc import typed_in_csc

DGL_CLIENT_ENV = {
    "DGL_ROLE": "client",
    "DGL_DIST_MODE": "distributed",
    "DGL_NUM_SERVER": "1",
    "DGL_NUM_SAMPLER": "0",
    # Fail within ~60 s (20 tries x 3 s) when a server is unreachable, not after 50 min.
    "DGL_DIST_MAX_TRY_TIMES": "20",
}


# DGL's client replaces the handlers of these with one that calls exit() in the handler.
DGL_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _signal_action(signum: int) -> ctypes.Array:
    """This process's disposition of ``signum``: its ``struct sigaction``, kept opaque."""
    action = ctypes.create_string_buffer(256)  # larger than struct sigaction on any Linux
    if _libc().sigaction(signum, None, action) != 0:
        raise OSError(ctypes.get_errno(), f"sigaction({signum}) failed")
    return action


def signal_handler(signum: int) -> int:
    """The address of this process's handler of ``signum`` (the struct's first field)."""
    return ctypes.c_void_p.from_buffer(_signal_action(signum)).value or 0


@contextlib.contextmanager
def _signal_handlers_kept():
    """Undo DGL's SIGINT and SIGTERM handlers once its client is up.

    ``dgl.distributed.initialize`` installs a handler that calls ``exit()`` inside the
    signal handler. Ray stops train workers with these signals, and that ``exit()`` in
    a multi-threaded worker crashed about one run in four at shutdown ("corrupted
    double-linked list", SIGSEGV). The handlers that were there (Python's and Ray's)
    are put back as they were.
    """
    before = {signum: _signal_action(signum) for signum in DGL_HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, action in before.items():
            if _libc().sigaction(signum, action, None) != 0:
                raise OSError(ctypes.get_errno(), f"sigaction({signum}) failed")


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigaction.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    return libc


def _ray_node_id():
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


@contextlib.contextmanager
def dist_graph_client(endpoints: ServerEndpoints, partitions_uri: str) -> Iterator[DistGraphSource]:
    """Connect to the graph servers at ``endpoints``.

    The partition served on this worker's Ray node, if any, is sampled in this
    process from shared memory; the others over RPC. Every client of a server group
    must enter and leave together: leaving calls ``exit_client``, a barrier across
    clients after which the servers shut down.
    """
    os.environ.update(DGL_CLIENT_ENV)
    dgl = import_dgl()
    with tempfile.TemporaryDirectory(prefix="graphtrain-client-") as workdir:
        path = os.path.join(workdir, "ip_config.txt")
        with open(path, "w") as f:
            f.write(endpoints.ip_config)
        with _signal_handlers_kept():
            dgl.distributed.initialize(path)
    try:
        # The client reads the partition book, the node maps, per-item counts and edge
        # weights; each partition's graph stays with its server, and a train worker
        # reads its own train edges from the artifact itself.
        partitions_dir = storage.materialize(partitions_uri, skip=reader_skips())
        local = endpoints.local_partition(_ray_node_id())
        name = endpoints.shared_memory_name(read_info(partitions_uri)["graph_name"], local)
        # Used when no local partition is in shared memory (a node without a server).
        book = dgl.distributed.load_partition_book(os.path.join(partitions_dir, PART_CONFIG), 0)[0]
        graph = dgl.distributed.DistGraph(name, gpb=book)
        source = DistGraphSource(graph, IdMapping.load(partitions_dir, edges=False), has_kvstore=not endpoints.co_located,
                                 partitions_dir=partitions_dir, partitions_uri=partitions_uri)
        if source.local_partition != local:
            raise GraphServerError(
                f"the DistGraph client on the node of partition {local}'s server mapped partition "
                f"{source.local_partition} from shared memory; is another run using graph name {name!r}?"
            )
        if graph.local_partition is not None:  # its index now, not in the first batch
            typed_in_csc(graph.local_partition, graph.get_partition_book())
        yield source
    finally:
        dgl.distributed.exit_client()
