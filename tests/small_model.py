"""A small trained-shape model artifact built in memory: a random cross-domain graph,
a MigrationGNN on it and the arrays export writes (no Ray, no DGL)."""

import numpy as np
import pandas as pd
import torch

from graphtrain.config import ModelConfig
from graphtrain.graph.batch import LayerEdges
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.inference.export import model_arrays
from graphtrain.inference.foldin import alpha_of
from graphtrain.models.gnn import MigrationGNN
from graphtrain.names import forward_etype, item_type, reverse_etype

DOMAINS = ["books", "movies"]
N_USERS, N_ITEMS = 40, {"books": 25, "movies": 30}


def graph(seed=0):
    rng = np.random.default_rng(seed)
    edges, weights = {}, {}
    for d in DOMAINS:
        pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, N_USERS, 150), rng.integers(0, N_ITEMS[d], 150))}
        users, items = (np.array(x, dtype=np.int64) for x in zip(*sorted(pairs)))
        order = rng.permutation(len(users))  # edge order need not be sorted
        edges[d] = (users[order], items[order])
        weights[d] = rng.uniform(0.5, 5.0, len(users)).astype(np.float32)
    return edges, weights


SMALL = ModelConfig(embedding_dim=8, transfer_hidden=6)


def small_artifact(config: ModelConfig = SMALL, seed=0, version="v"):
    torch.manual_seed(seed)
    edges, raw_weights = graph(seed)
    num_nodes = {"user": N_USERS, **{item_type(d): N_ITEMS[d] for d in DOMAINS}}
    model = MigrationGNN(config, num_nodes, "books", "movies")
    with torch.no_grad():  # move off the identity start so W and biases matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    alpha = None if config.edge_weights == "none" else {d: alpha_of(w, config.edge_weights) for d, w in raw_weights.items()}
    index, layer_weights = {}, {}
    for d, (u, i) in edges.items():
        index[forward_etype(d)] = (torch.from_numpy(u), torch.from_numpy(i))
        index[reverse_etype(d)] = (torch.from_numpy(i), torch.from_numpy(u))
        if alpha is not None:
            layer_weights[forward_etype(d)] = layer_weights[reverse_etype(d)] = torch.from_numpy(alpha[d])
    layer = LayerEdges(index, num_nodes, layer_weights)
    model.eval()
    reps = model.embed([layer] * config.num_layers)
    popularity = {d: np.bincount(edges[d][1], minlength=N_ITEMS[d]).astype(np.float32) for d in DOMAINS}
    arrays = model_arrays(model, reps, edges, alpha, popularity, N_USERS)
    manifest = {"version": "v", "domains": DOMAINS, "source_domain": "books", "target_domain": "movies",
                "model": config.to_dict()}
    users = pd.DataFrame({"user_id": [f"u{n}" for n in range(N_USERS)], "user_idx": range(N_USERS)})
    items = pd.DataFrame([(d, f"{d}{n}", n) for d in DOMAINS for n in range(N_ITEMS[d])], columns=["domain", "item_id", "item_idx"])
    manifest["version"] = version
    return ModelArtifact(manifest=manifest, users=users, items=items, arrays=arrays), raw_weights, edges




def write_small_model(uri: str, **kwargs) -> str:
    """``small_artifact(**kwargs)`` committed at ``uri`` the way export commits one."""
    from graphtrain import storage
    from graphtrain.inference import artifact as artifact_io

    model = small_artifact(**kwargs)[0]
    arrays = {name: np.asarray(array) for name, array in model.arrays.items()}
    with storage.atomic_artifact(uri) as staging:
        artifact_io.write(staging, manifest=model.manifest, users=model.users, items=model.items, arrays=arrays)
    return uri
