"""The baseline of bench/serve.py: a bare FastAPI app in one uvicorn process that
answers ``GET /recommend`` with the same ``Recommender`` (same top-K) and response
model as the Serve app, without Serve's proxy, replica queue or batching.

    python bench/serve_bare.py MODEL PORT APPROXIMATE_ABOVE
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from graphtrain.serve import schemas  # noqa: E402
from graphtrain.serve.app import _response  # noqa: E402
from graphtrain.serve.recommender import Recommender  # noqa: E402


def build(model: str, approximate_above: int) -> FastAPI:
    recommender = Recommender.load(model, approximate_above=approximate_above)
    api = FastAPI()

    @api.get("/recommend", response_model=schemas.RecommendResponse)
    def recommend(user_id: str, k: int = 10, domain: str | None = None, exclude_seen: bool = True):
        return _response(recommender.recommend(user_id, k, domain, exclude_seen))

    @api.get("/health")
    def health():
        return {"status": "ok", "model_version": recommender.version}

    return api


if __name__ == "__main__":
    model, port, approximate_above = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    uvicorn.run(build(model, approximate_above), host="127.0.0.1", port=port, log_level="warning")
