"""Ray Serve deployment behind FastAPI.

HTTP API::

    GET /recommend?user_id=U&k=10&domain=D   -> {"user_id", "domain", "strategy", "model_version", "items": [{"item_id", "score"}]}
    GET /health                               -> {"status": "ok", "model_version"}
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query
from ray import serve

from graphtrain.config import ServeConfig
from graphtrain.serve.recommender import Recommender, UnknownDomainError

APP_NAME = "graphtrain"
api = FastAPI(title="graphtrain recommender")


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class RecommenderDeployment:
    def __init__(self, model_uri: str, max_k: int):
        self.recommender = Recommender.load(model_uri)
        self.max_k = max_k

    @api.get("/recommend")
    def recommend(self, user_id: str, k: int = Query(10, ge=1), domain: str | None = None) -> dict:
        if k > self.max_k:
            raise HTTPException(422, f"k={k} is above the limit {self.max_k}")
        try:
            return self.recommender.recommend(user_id, k, domain)
        except UnknownDomainError as exc:
            raise HTTPException(404, str(exc)) from exc

    @api.get("/health")
    def health(self) -> dict:
        return {"status": "ok", "model_version": self.recommender.version}


def start(config: ServeConfig) -> str:
    """Deploy on the current Ray instance; returns the base URL."""
    from graphtrain.ray_env import ensure_ray

    ensure_ray()
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(RecommenderDeployment.bind(config.model, config.max_k), name=APP_NAME, route_prefix="/")
    return f"http://{config.host}:{config.port}"


def stop() -> None:
    serve.shutdown()
