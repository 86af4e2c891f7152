"""The Ray Serve app: a FastAPI ingress over :class:`Recommender` replicas.

HTTP API (pydantic models in :mod:`graphtrain.serve.schemas`; ``/docs`` and
``/openapi.json`` describe every field)::

    GET  /recommend?user_id=&domain=&k=10&exclude_seen=true   one user's top-k, with its reason
    POST /recommend/batch   {"user_ids": [...], "k": 10, "domain": null}   one answer per user, in order
    POST /interactions      {"user_id", "item_id", "domain", "weight"?}    fold in, durably logged
    GET  /explain?user_id=&item_id=&domain=    the user's interactions behind one item's score
    GET  /similar?item_id=&domain=&k=10        items closest to an item
    GET  /health  /version  /domains           and GET / : a page to try it

With a bearer token configured (required beyond loopback: :mod:`graphtrain.serve.auth`)
every endpoint but ``/health``, the page and the API description answers 401 without
``Authorization: Bearer <token>``.

Single ``/recommend`` calls are grouped by ``@serve.batch`` into one matrix product
per domain. Hot reload: :func:`reload` changes the deployment's ``user_config`` and
Serve calls ``reconfigure`` on each running replica, which loads the new model beside
the old one and swaps them in one assignment, so no request fails across the swap.
Folded-in interactions live in one :class:`InteractionStore` actor per app (durable
log, replayed into every replica and every reloaded model). The replica that takes a
``POST /interactions`` folds it in before answering; the others pick it up within
``SYNC_INTERVAL_S`` (reads never wait on the store).
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve

from graphtrain import storage
from graphtrain.config import ServeConfig
from graphtrain.errors import ServeError
from graphtrain.registry import Registry
from graphtrain.serve import auth, schemas
from graphtrain.serve.index import AnnSettings
from graphtrain.serve.interactions import InteractionStore, default_log_uri, record
from graphtrain.serve.recommender import (
    FoldInUnavailable, Recommender, UnknownDomainError, UnknownItemError, UnknownUserError,
)

APP_NAME = "graphtrain"
DEPLOYMENT = "RecommenderDeployment"
STORE_NAMESPACE = "graphtrain"
SYNC_INTERVAL_S = 0.1  # how stale another replica's fold-ins may be
PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")
logger = logging.getLogger("graphtrain.serve")
api = FastAPI(
    title="graphtrain recommender",
    description="Cross-domain recommendations with fold-in of new interactions. Try it at /.",
)


@api.middleware("http")
async def _require_token(request, call_next):
    if not auth.authorized(request.url.path, request.headers.get("authorization"), auth.required_digest()):
        return JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return await call_next(request)


def store_name(app_name: str) -> str:
    return f"graphtrain-interactions-{app_name}"


def _http_error(err: Exception) -> HTTPException:
    if isinstance(err, (UnknownDomainError, UnknownItemError, UnknownUserError)):
        return HTTPException(404, str(err))
    if isinstance(err, FoldInUnavailable):
        return HTTPException(409, str(err))
    return HTTPException(400, str(err))


def _response(answer) -> schemas.RecommendResponse:
    return schemas.RecommendResponse(
        user_id=answer.user_id, domain=answer.domain, reason=answer.reason, model_version=answer.model_version,
        items=[schemas.ScoredItem(item_id=i.item_id, score=i.score) for i in answer.items],
    )


def _report_metrics(model_uri: str) -> dict:
    """Target-domain metrics of the run that made the model, when its report sits in
    the usual place (``reports/report.json`` beside the model)."""
    try:
        report = storage.read_json(storage.join(storage.sibling(model_uri, "reports"), "report.json"))
        return report.get("models", {}).get("graphtrain", {})
    except (OSError, ValueError, FileNotFoundError):
        return {}


@serve.deployment(name=DEPLOYMENT, health_check_period_s=5, health_check_timeout_s=30)
@serve.ingress(api)
class RecommenderDeployment:
    def __init__(
        self, max_k: int, approximate_above: int, ann: str, interaction_log: str | None, app_name: str = APP_NAME,
        registry: str | None = None, registry_poll_s: float = 2.0, token_digest: str | None = None,
    ):
        auth.require(token_digest)  # this replica process's rule (module state: see graphtrain.serve.auth)
        self.max_k = max_k
        self.registry = registry
        self.registry_poll_s = registry_poll_s
        self.registry_version: int | None = None  # the registry version being served
        self.approximate_above = approximate_above
        self.ann = AnnSettings(method=ann)
        self.interaction_log = interaction_log
        self.app_name = app_name
        self.recommender: Recommender | None = None
        self.model_uri: str | None = None
        self.metrics: dict = {}
        self.store = None
        self.synced = 0  # store records folded into self.recommender
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None

    # -- model lifecycle -------------------------------------------------------------
    async def reconfigure(self, user_config: dict) -> None:
        """Load ``user_config["model"]`` beside the serving model, replay the folded-in
        interactions into it, then swap."""
        model_uri = user_config["model"]
        if model_uri == self.model_uri and self.recommender is not None:
            return
        store = self._store(model_uri)
        cache = {} if self.registry is None else {"index_cache": storage.join(self.registry, "ann-cache")}
        loaded = await asyncio.to_thread(
            Recommender.load, model_uri, approximate_above=self.approximate_above, ann=self.ann, **cache
        )
        total, records = await store.since.remote(0)
        for problem in loaded.fold_all(records):
            logger.warning("model %s cannot fold a logged interaction in: %s", loaded.version, problem)
        metrics = await asyncio.to_thread(_report_metrics, model_uri)
        async with self._lock:
            self.recommender, self.synced, self.model_uri, self.metrics = loaded, total, model_uri, metrics
            self.registry_version = user_config.get("registry_version")
        logger.info("serving model %s from %s", loaded.version, model_uri)
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        if self.registry is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_registry())

    async def _watch_registry(self) -> None:
        """Serve whatever the registry's ``current`` names: a promotion or a rollback
        reaches every replica within ``registry_poll_s``, each swapping as a reload does."""
        registry = Registry(self.registry)
        while True:
            await asyncio.sleep(self.registry_poll_s)
            try:
                pointer = await asyncio.to_thread(registry.pointer)
                if pointer and pointer["version"] != self.registry_version:
                    number = int(pointer["version"])
                    await self.reconfigure({"model": registry.get(number).model, "registry_version": number})
            except Exception as err:  # a half-visible pointer or a bad version: keep serving the old one
                logger.warning("could not follow the registry %s: %s", self.registry, err)

    async def _poll(self) -> None:
        """Fold in what other replicas logged, every ``SYNC_INTERVAL_S``: reads never
        wait on the store, and a replica's own ``POST /interactions`` syncs at once."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self._sync()
            except Exception as err:  # the store restarts (max_restarts=-1); keep serving
                logger.warning("could not sync folded-in interactions: %s", err)

    def _store(self, model_uri: str):
        if self.store is None:
            import ray

            log_uri = self.interaction_log or (
                storage.join(self.registry, "interactions") if self.registry else default_log_uri(model_uri)
            )
            self.store = ray.remote(InteractionStore).options(
                name=store_name(self.app_name), namespace=STORE_NAMESPACE, get_if_exists=True,
                lifetime="detached", max_restarts=-1, num_cpus=0,
            ).remote(log_uri)
        return self.store

    def check_health(self) -> None:
        if self.recommender is None:
            raise RuntimeError("no model loaded yet")

    def _model(self) -> Recommender:
        if self.recommender is None:
            raise HTTPException(503, "no model loaded yet")
        return self.recommender

    async def _sync(self) -> Recommender:
        """The current model with every interaction any replica has folded in."""
        recommender = self._model()
        total, records = await self.store.since.remote(self.synced)
        if records:
            async with self._lock:
                if recommender is self.recommender and total > self.synced:
                    recommender.fold_all(records[len(records) - (total - self.synced):])
                    self.synced = total
        return self.recommender

    def _check_k(self, k: int) -> None:
        if k > self.max_k:
            raise HTTPException(422, f"k={k} is above this server's max_k={self.max_k}; ask for fewer")

    # -- endpoints -----------------------------------------------------------------------
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(self) -> str:
        with open(PAGE) as f:
            return f.read()

    # No wait for company: under load, requests queue while the last batch is scored.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _recommend_batch(self, requests: list[tuple]) -> list:
        recommender = self._model()
        try:
            return recommender.recommend_many(list(requests))
        except Exception as err:  # one bad request must not fail its neighbours
            logger.debug("batched recommend failed (%s); answering one by one", err)
            out = []
            for request in requests:
                try:
                    out.append(recommender.recommend_many([request])[0])
                except Exception as one:
                    out.append(one)
            return out

    @api.get("/recommend", response_model=schemas.RecommendResponse)
    async def recommend(
        self, user_id: str = Query(..., min_length=1), k: int = Query(10, ge=1), domain: str | None = None,
        exclude_seen: bool = True,
    ) -> schemas.RecommendResponse:
        self._check_k(k)
        try:
            domain = self._model().check_domain(domain)
        except UnknownDomainError as err:
            raise _http_error(err) from err
        answer = await self._recommend_batch((user_id, k, domain, exclude_seen))
        if isinstance(answer, Exception):
            raise _http_error(answer)
        return _response(answer)

    @api.post("/recommend/batch", response_model=schemas.BatchResponse)
    async def recommend_batch(self, body: schemas.BatchRequest) -> schemas.BatchResponse:
        self._check_k(body.k)
        recommender = self._model()
        try:
            answers = recommender.recommend_many([(u, body.k, body.domain, body.exclude_seen) for u in body.user_ids])
        except (UnknownDomainError, UnknownItemError) as err:
            raise _http_error(err) from err
        return schemas.BatchResponse(results=[_response(a) for a in answers])

    @api.post("/interactions", response_model=schemas.InteractionResponse)
    async def interactions(self, body: schemas.InteractionRequest) -> schemas.InteractionResponse:
        recommender = self._model()
        try:  # refuse what cannot be folded before it reaches the log
            recommender.item_idx(recommender.check_domain(body.domain), body.item_id)
            if recommender.fold_in is None:
                raise FoldInUnavailable(f"model {recommender.version} has no fold-in arrays; re-export it")
        except (UnknownDomainError, UnknownItemError, FoldInUnavailable) as err:
            raise _http_error(err) from err
        logged = await self.store.add.remote(record(body.user_id, body.item_id, body.domain, body.weight, body.timestamp))
        recommender = await self._sync()
        return schemas.InteractionResponse(
            user_id=body.user_id, item_id=body.item_id, domain=body.domain, logged=logged,
            reason=recommender.reason(body.user_id, recommender.target_domain),
        )

    @api.get("/explain", response_model=schemas.ExplainResponse)
    async def explain(
        self, user_id: str = Query(..., min_length=1), item_id: str = Query(..., min_length=1), domain: str | None = None
    ) -> schemas.ExplainResponse:
        recommender = self._model()
        try:
            return schemas.ExplainResponse(**recommender.explain(user_id, item_id, domain))
        except (UnknownDomainError, UnknownItemError, UnknownUserError, FoldInUnavailable) as err:
            raise _http_error(err) from err

    @api.get("/similar", response_model=schemas.SimilarResponse)
    def similar(self, item_id: str = Query(..., min_length=1), domain: str | None = None, k: int = Query(10, ge=1)):
        self._check_k(k)
        try:
            return schemas.SimilarResponse(**self._model().similar(item_id, domain, k))
        except (UnknownDomainError, UnknownItemError) as err:
            raise _http_error(err) from err

    @api.get("/health", response_model=schemas.HealthResponse)
    def health(self) -> schemas.HealthResponse:
        return schemas.HealthResponse(status="ok", model_version=self._model().version)

    @api.get("/version", response_model=schemas.VersionResponse)
    def version(self) -> schemas.VersionResponse:
        summary = self._model().manifest_summary()
        return schemas.VersionResponse(**{
            **summary, "metrics": summary["metrics"] or self.metrics, "registry_version": self.registry_version,
            "model_uri": self.model_uri,
        })

    @api.get("/domains", response_model=schemas.DomainsResponse)
    def domains(self) -> schemas.DomainsResponse:
        rec = self._model()
        roles = {rec.source_domain: "source", rec.target_domain: "target"}
        return schemas.DomainsResponse(domains=[
            schemas.DomainInfo(name=d, items=len(rec.item_ids[d]), role=roles.get(d, "other")) for d in rec.domains
        ])


def deployment(config: ServeConfig, app_name: str = APP_NAME):
    """The bound Serve application for ``config``."""
    token_digest = auth.server_token_digest(config.host, config.token_file, config.require_token)
    options = {
        "max_ongoing_requests": config.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": config.cpus_per_replica},
        "user_config": _user_config(config),
        # A log line per request costs more than scoring one on a small node.
        "logging_config": {"enable_access_log": False},
    }
    if config.max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": config.min_replicas, "max_replicas": config.max_replicas,
            "target_ongoing_requests": config.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = config.replicas
    return RecommenderDeployment.options(**options).bind(
        config.max_k, config.approximate_above, config.ann, config.interaction_log, app_name,
        config.registry, config.registry_poll_s, token_digest,
    )


def _user_config(config: ServeConfig) -> dict:
    """What a replica loads: the model, or the registry's current version."""
    if config.registry is None:
        return {"model": config.model}
    current = Registry(config.registry).current()
    if current is None:
        Registry(config.registry).current_model()  # raises, naming the fix
    return {"model": current.model, "registry_version": current.number}


def start(config: ServeConfig, app_name: str = APP_NAME) -> str:
    """Deploy on the current Ray instance (started on demand); returns the base URL."""
    from graphtrain.ray_env import ensure_ray

    from graphtrain.ray_env import verbose

    auth.server_token_digest(config.host, config.token_file, config.require_token)  # refuse before starting anything
    if not verbose():  # Serve's start-up narration, in this process
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    ensure_ray()
    _kill_store(app_name)  # a fresh store replays the (possibly newly configured) log
    serve.start(
        http_options={"host": config.host, "port": config.port, "request_timeout_s": config.request_timeout_s},
        logging_config={"enable_access_log": False},
    )
    serve.run(deployment(config, app_name), name=app_name, route_prefix="/")
    return f"http://{config.host}:{config.port}"


def reload(config: ServeConfig, app_name: str = APP_NAME) -> None:
    """Point the running app at ``config.model``. Only ``user_config`` changes, a
    lightweight update: every replica's ``reconfigure`` loads the new model beside the
    old one and swaps, so requests keep being answered throughout."""
    if config.model is not None:
        storage.require_artifact(config.model, "export")  # refuse before touching the app
    if app_name not in serve.status().applications:
        raise ServeError(f"no Serve app {app_name!r} is running on this Ray cluster; start it with `graphtrain serve`")
    serve.run(deployment(config, app_name), name=app_name, route_prefix="/")


def _kill_store(app_name: str) -> None:
    import ray

    try:
        ray.kill(ray.get_actor(store_name(app_name), namespace=STORE_NAMESPACE), no_restart=True)
    except ValueError:
        pass


def stop(app_name: str = APP_NAME) -> None:
    try:
        serve.shutdown()
    finally:
        _kill_store(app_name)


def build(args: dict):
    """Application builder for Serve config files (KubeRay RayService ``serveConfigV2``,
    ``serve run graphtrain.serve.app:build registry=s3://...``): ``args`` are ServeConfig
    fields, given as strings there; host and port come from the file's ``http_options``,
    which this cannot see, so the bearer token is required unless ``require_token`` is
    "false" (then the file must bind loopback)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise ServeError(f"unknown ServeConfig field(s) {unknown}; known: {sorted(fields)}")
    values = {}
    for name, value in args.items():
        default = fields[name].default
        if isinstance(value, str) and isinstance(default, bool):
            value = value.strip().lower() in ("1", "true", "yes")
        elif isinstance(value, str) and isinstance(default, (int, float)):
            value = type(default)(value)
        values[name] = value
    values.setdefault("require_token", True)
    return deployment(ServeConfig(**values))
