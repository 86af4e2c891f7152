"""Neighbour sampling: graphtrain's distributed path vs DGL in-process, same run.

For each graph, with the same batch size, fanouts and one negative per positive:
  dgl_inprocess   DGL's own link-prediction DataLoader (NeighborSampler +
                  as_edge_prediction_sampler, reverse edges excluded) in this process,
                  on the graph with int64 ids (DGL's default) and again with int32 ids
                  (``dgl_inprocess_int32``): graphtrain's CSCs use int32 while ids fit
  ours_local      graphtrain's EdgeBatchSampler on the same in-process graph
  ours_dist_Np    N graph-server partitions started by Ray actors, 2 Ray workers as
                  DistGraph clients sampling their (partition-aware) shards at once:
                  total seeds over the window from the first start to the last end.
                  On one machine both clients sample partition 0 in-process and ask
                  partition 1's server over RPC.
Seeds are positive training edges. ratio = ours_dist_1p / the faster DGL arm.
Our samplers draw ``--batches-per-draw`` batches' neighbourhoods at once, as training
does (``TrainConfig.batches_per_draw``): each batch gets all its nodes' drawn edges,
and batches of one draw share the draws of nodes they have in common. DGL's loader
draws every batch alone; ``--batches-per-draw 1`` does too.
Every sampler draws the fanout per edge type (a user with two domains gets up to
``fanout`` items from each), so the samplers do the same work per seed; the sampled
edges/s row (edges of all layers' blocks) shows it.
Partitions are METIS up to ``--metis-max-edges`` train edges and random above (METIS
on the 1.29M-edge generated graph already peaked at 10.8 GB).

    python bench/sampling.py [--graphs sport_cloth generated:2000000 generated:15500000] [--batches 100]

(the default graphs; generated:N is N log rows, about 0.65 N train edges).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same single thread for every sampler
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bench.common import RESULTS, PeakMemory, write_result  # noqa: E402
from graphtrain.config import TrainConfig  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "disencdr")


def disencdr_edges(pair: str) -> pd.DataFrame:
    """Both sides of a DisenCDR pair (``<a>_<b>``) as contract rows with their split column."""
    a, b = pair.split("_")
    frames = []
    for folder, domain in ((f"{a}_{b}", a), (f"{b}_{a}", b)):
        for split, name in (("train", "train.txt"), ("test", "test.txt")):
            df = pd.read_csv(os.path.join(SHARED, folder, name), sep="\t", header=None, names=["user_id", "item_id", "w"])
            frames.append(df.assign(domain=domain, split=split)[["user_id", "item_id", "domain", "split"]])
    return pd.concat(frames, ignore_index=True)


def disencdr_logs(pair: str, directory: str) -> list[str]:
    """The two sides of a DisenCDR pair as a contract log file."""
    path = os.path.join(directory, f"{pair}.parquet")
    disencdr_edges(pair).to_parquet(path, index=False)
    return [path]


def generated_logs(rows: int, directory: str) -> list[str]:
    from bench.ingest import generate

    generate(rows, directory)
    return [directory]


def graph_domains(graph: str) -> tuple[str, str]:
    """(source, target) domain of a graph spec: generated:N, or a DisenCDR pair <a>_<b>."""
    return ("books", "movies") if graph.startswith("generated:") else tuple(graph.split("_"))


def build(graph: str, work: str) -> str:
    """The dataset URI of a graph spec, ingested under ``work``."""
    from graphtrain.config import IngestConfig
    from graphtrain.data.ingest import ingest

    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    source, target = graph_domains(graph)
    if graph.startswith("generated:"):
        inputs = generated_logs(int(graph.split(":")[1]), raw)
    else:
        inputs = disencdr_logs(graph, raw)
    out = os.path.join(work, "dataset")
    ingest(IngestConfig(inputs=inputs, output=out, source_domain=source, target_domain=target, cold_start_fraction=0.0))
    return out


def _batches(dataset, rank: int, world: int, batch_size: int, count: int, source=None, rank_partitions=None):
    """The first ``count`` batches of this rank's share, epoch after epoch (full batches
    only). With a DistGraph ``source`` and the partition each rank samples in-process,
    the share is read from the partitions as in training (``dataset``: its URI)."""
    from graphtrain.train.data import TrainData
    from graphtrain.train.edges import load_share, plan_shares

    if source is None:
        data, rank_partitions = TrainData.from_dataset(dataset), [None] * world
    else:
        data = TrainData.from_partitions(source.partitions_dir, dataset, source.partitions_uri)
    shares, size = plan_shares(data.edge_counts, rank_partitions)
    edges = load_share(shares[rank], data.load_edges, data.domains, seed=0)
    epoch = 0
    while True:
        shard = edges.epoch(size, epoch, 0, rank)
        for begin in range(0, len(shard.users) - batch_size + 1, batch_size):
            if count == 0:
                return
            yield shard.rows(begin, batch_size)
            count -= 1
        epoch += 1


def time_sampler(sampler, batches, batches_per_draw: int) -> tuple[int, int, float]:
    """(seeds, sampled edges over all layers, seconds) of sampling ``batches``,
    ``batches_per_draw`` at a time as in training."""
    rng = np.random.default_rng(0)
    seeds, edges, started = 0, 0, time.perf_counter()
    for begin in range(0, len(batches), batches_per_draw):
        for mb in sampler.sample_group(batches[begin:begin + batches_per_draw], rng):
            seeds += mb.num_seeds
            edges += sum(len(src) for layer in mb.layers for src, _ in layer.edges.values())
    return seeds, edges, time.perf_counter() - started


def dgl_inprocess(dataset, fanouts, batch_size, count, idtype=torch.int64) -> tuple[float, float]:
    """(seeds/s, sampled edges/s) of DGL's own loader, on the graph with ``idtype`` ids."""
    from graphtrain.graph.build import train_graph
    from graphtrain.graph.dgl_compat import import_dgl
    from graphtrain.names import forward_etype, reverse_etype

    dgl = import_dgl()
    g = train_graph(dataset)
    g = g.int() if idtype == torch.int32 else g.long()
    g.create_formats_()  # every sparse format DGL may use, built before timing (as our samplers build theirs)
    eids = {forward_etype(d): torch.arange(g.num_edges(forward_etype(d)), dtype=idtype) for d in dataset.domains}
    reverse = {}
    for d in dataset.domains:
        reverse[forward_etype(d)], reverse[reverse_etype(d)] = reverse_etype(d), forward_etype(d)
    sampler = dgl.dataloading.as_edge_prediction_sampler(
        dgl.dataloading.NeighborSampler(list(fanouts)),
        exclude="reverse_types",
        reverse_etypes=reverse,
        negative_sampler=dgl.dataloading.negative_sampler.Uniform(1),
    )
    loader = dgl.dataloading.DataLoader(g, eids, sampler, batch_size=batch_size, shuffle=True, drop_last=False, num_workers=0)
    batches = iter(loader)  # the epoch's shuffle, outside the timed window as for the other samplers
    seeds, edges, started = 0, 0, time.perf_counter()
    for step, (_, pair_graph, _, blocks) in enumerate(batches):
        if step >= count:
            break
        seeds += pair_graph.num_edges()
        edges += sum(block.num_edges() for block in blocks)
    seconds = time.perf_counter() - started
    return seeds / seconds, edges / seconds


def ours_local(dataset, fanouts, batch_size, count, batches_per_draw) -> tuple[float, float]:
    from graphtrain.graph.build import train_graph
    from graphtrain.graph.sampling import EdgeBatchSampler, LocalGraphSource

    num_items = {d: dataset.num_items(d) for d in dataset.domains}
    sampler = EdgeBatchSampler(LocalGraphSource(train_graph(dataset)), dataset.domains, num_items, fanouts, 1)
    batches = list(_batches(dataset, 0, 1, batch_size, count))  # shards built before timing, as in _dist_client
    seeds, edges, seconds = time_sampler(sampler, batches, batches_per_draw)
    return seeds / seconds, edges / seconds


def _dist_client(endpoints, partitions, dataset_uri, rank, rank_partitions, fanouts, batch_size, count, batches_per_draw):
    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.client import dist_graph_client
    from graphtrain.graph.sampling import EdgeBatchSampler

    dataset = Dataset.load(dataset_uri)
    with dist_graph_client(endpoints, partitions) as source:
        num_items = {d: dataset.num_items(d) for d in dataset.domains}
        sampler = EdgeBatchSampler(source, dataset.domains, num_items, fanouts, 1)
        if source.local_partition != rank_partitions[rank]:
            raise RuntimeError(f"client {rank} samples partition {source.local_partition}, not {rank_partitions[rank]}")
        batches = list(_batches(dataset_uri, rank, len(rank_partitions), batch_size, count, source, rank_partitions))
        source.graph.barrier()  # every client starts timing together: the totals are of concurrent work
        started, cpu, machine = time.time(), time.process_time(), _machine_cpu_seconds()
        seeds, edges, seconds = time_sampler(sampler, batches, batches_per_draw)
        cpu = time.process_time() - cpu  # every thread of this process, DGL's RPC threads included
        busy, steal = (after - before for after, before in zip(_machine_cpu_seconds(), machine))
        return {"seeds": seeds, "edges": edges, "seconds": seconds, "cpu_seconds": cpu, "started": started, "ended": started + seconds,
                "machine_busy_seconds": busy, "machine_steal_seconds": steal, "cores": sorted(os.sched_getaffinity(0))}


def _machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of this machine so far (``/proc/stat``, all cores).
    Busy: what every process ran (over a client's window: itself, the servers, Ray's
    daemons). Stolen: time the hypervisor gave the cores to other machines."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def ours_dist(ray, dataset_uri, work, parts, method, fanouts, batch_size, count, batches_per_draw, clients=2) -> dict:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from graphtrain.config import PartitionConfig
    from graphtrain.graph.partition import partition
    from graphtrain.graph.servers import GraphServerGroup

    out = os.path.join(work, f"partitions{parts}")
    partition(PartitionConfig(dataset=dataset_uri, output=out, num_parts=parts, method=method))
    client = ray.remote(num_cpus=1, max_calls=1)(_dist_client)
    with GraphServerGroup(out, parts, num_clients=clients) as group:
        # Client r runs on partition (r mod parts)'s node, as a train worker would.
        nodes = [group.endpoints.node_ids[r % parts] for r in range(clients)]
        rank_partitions = [group.endpoints.local_partition(node) for node in nodes]
        server_pids = [h["pid"] for h in group.health()]
        servers_cpu = _cpu_seconds(server_pids)
        server_cores = [sorted(os.sched_getaffinity(pid)) for pid in server_pids]
        results = ray.get([
            client.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                group.endpoints, out, dataset_uri, r, rank_partitions, fanouts, batch_size, count, batches_per_draw
            )
            for r, node in enumerate(nodes)
        ])
        after = _cpu_seconds(server_pids)
        servers_cpu = after - servers_cpu if servers_cpu is not None and after is not None else None
    per_client = [r["seeds"] / r["seconds"] for r in results]
    # Total seeds over the wall-clock window from the first client's start to the last
    # one's end (not a sum of rates, which would credit clients that ran alone).
    window = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return {
        "total": sum(r["seeds"] for r in results) / window, "per_client": per_client,
        "edges_per_s": sum(r["edges"] for r in results) / window,
        "client_cpu_share": [r["cpu_seconds"] / r["seconds"] for r in results],  # CPU seconds per wall second
        "machine_busy_cores": [r["machine_busy_seconds"] / r["seconds"] for r in results],  # everything, each client's window
        "machine_steal_cores": [r["machine_steal_seconds"] / r["seconds"] for r in results],
        "client_cores": [r["cores"] for r in results], "server_cores": server_cores,  # CPU affinity
        # The servers' CPU seconds over the clients' whole lives (loading included); None if unreadable.
        "servers_cpu_seconds": servers_cpu, "window_seconds": window,
    }


def _cpu_seconds(pids):
    """User + system CPU seconds of processes on this machine (the simulated nodes'
    servers); None when one has already exited (servers stop once the clients leave)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if fields[0] == "Z":
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(ray, graph: str, work: str, args) -> dict:
    """One table row: every sampler on one graph."""
    from graphtrain.data.dataset import Dataset

    uri = build(graph, work)
    dataset = Dataset.load(uri)
    n_edges = int((dataset.edges["split"] == "train").sum())
    common = (args.fanouts, args.batch_size, args.batches)
    ours = (*common, args.batches_per_draw)
    method = "metis" if n_edges <= args.metis_max_edges else "random"
    row = {"graph": graph, "train_edges": n_edges, "partition_method": method}
    row["dgl_inprocess"], row["dgl_inprocess_edges_per_s"] = dgl_inprocess(dataset, *common)
    row["dgl_inprocess_int32"], row["dgl_inprocess_int32_edges_per_s"] = dgl_inprocess(dataset, *common, idtype=torch.int32)
    best = "dgl_inprocess" if row["dgl_inprocess"] >= row["dgl_inprocess_int32"] else "dgl_inprocess_int32"
    row["dgl_best"], row["dgl_best_edges_per_s"] = row[best], row[f"{best}_edges_per_s"]
    row["ours_local"], row["ours_local_edges_per_s"] = ours_local(dataset, *ours)
    del dataset  # the driver's copy; the clients load their own
    for parts in (1, 2):
        dist = ours_dist(ray, uri, work, parts, method, *ours)
        row[f"ours_dist_{parts}p"] = dist["total"]
        row[f"ours_dist_{parts}p_per_client"] = dist["per_client"]
        row[f"ours_dist_{parts}p_edges_per_s"] = dist["edges_per_s"]
    row["ratio_dist_1p"] = row["ours_dist_1p"] / row["dgl_best"]
    row["ratio_local"] = row["ours_local"] / row["dgl_best"]
    row["ratio_dist_1p_edges"] = row["ours_dist_1p_edges_per_s"] / row["dgl_best_edges_per_s"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_graphs = ["generated:2000000", "generated:15500000"]  # ~1.3M and ~10M train edges
    if os.path.isdir(SHARED):
        default_graphs.insert(0, "sport_cloth")
    parser.add_argument("--graphs", nargs="+", default=default_graphs)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--fanouts", type=lambda t: tuple(int(x) for x in t.split(",")), default=(10, 10))
    parser.add_argument("--batches", type=int, default=100, help="batches timed per sampler (40 proved too short a window here)")
    parser.add_argument("--metis-max-edges", type=int, default=2_000_000, help="random partitions above this many train edges")
    parser.add_argument("--batches-per-draw", type=int, default=TrainConfig.batches_per_draw,
                        help="our samplers' batches per neighbour draw, as in training (1: each alone, as DGL's loader)")
    parser.add_argument("--name", default="sampling", help="results in bench/results/<name>.json")
    args = parser.parse_args(argv)
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray(num_cpus=2)
    rows = []
    try:
        for graph in args.graphs:
            work = tempfile.mkdtemp(prefix="graphtrain-bench-sampling-")
            try:
                with PeakMemory() as peak:
                    row = measure(ray, graph, work, args)
                row["peak_gib"] = peak.peak_gib  # this process and its descendants (Ray included)
                rows.append(row)
                print(
                    f"{graph:<20} {row['train_edges']:>10,} edges ({row['partition_method']})  seeds/s: dgl in-process "
                    f"{row['dgl_inprocess']:>9,.0f} (int32 ids {row['dgl_inprocess_int32']:>9,.0f})  ours local {row['ours_local']:>9,.0f}  ours dist 1p "
                    f"{row['ours_dist_1p']:>9,.0f}  2p {row['ours_dist_2p']:>9,.0f}  ratio(dist 1p / dgl) "
                    f"{row['ratio_dist_1p']:.2f}  peak {row['peak_gib']} GiB\n"
                    f"{'':<20} {'':>10}  sampled edges/s:  dgl in-process {row['dgl_inprocess_edges_per_s']:>11,.0f} "
                    f"(int32 ids {row['dgl_inprocess_int32_edges_per_s']:>11,.0f})  "
                    f"ours local {row['ours_local_edges_per_s']:>11,.0f}  ours dist 1p {row['ours_dist_1p_edges_per_s']:>11,.0f}  "
                    f"2p {row['ours_dist_2p_edges_per_s']:>11,.0f}  ratio(dist 1p / dgl) {row['ratio_dist_1p_edges']:.2f}",
                    flush=True,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        ray.shutdown()
    last = rows[-1]
    write_result(
        args.name, "seeds/s", last["ours_dist_1p"], last["dgl_best"],
        {"rows": rows, "batch_size": args.batch_size, "fanouts": list(args.fanouts), "batches": args.batches, "clients": 2,
         "batches_per_draw": args.batches_per_draw},
    )
    print(f"wrote {os.path.join(RESULTS, args.name + '.json')}")


if __name__ == "__main__":
    main()
