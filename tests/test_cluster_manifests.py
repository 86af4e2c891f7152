"""cluster/ validates as the servers that read it would: every KubeRay manifest
against its CRD's openAPIV3Schema (strict: unknown fields are errors, as with
`kubectl apply`'s default server-side field validation), the launcher YAML against
the ray-schema.json inside the ray wheel, and every entrypoint and import path they
name exists here."""

import copy
import importlib
import os
import pathlib
import shlex

import jsonschema
import pytest
import ray
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
# the sibling shared/ folder, or GRAPHTRAIN_SHARED where a clone lives elsewhere
CRDS = pathlib.Path(os.environ.get("GRAPHTRAIN_SHARED", REPO.parent / "shared")) / "kuberay-crds"
MANIFESTS = sorted((REPO / "cluster" / "kuberay").glob("*.yaml"))
LAUNCHER = REPO / "cluster" / "launcher.yaml"
RAY_SCHEMA = pathlib.Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(kind, version) -> that version's openAPIV3Schema, from ../shared/kuberay-crds."""
    schemas = {}
    for path in sorted(CRDS.glob("ray.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schemas[(crd["spec"]["names"]["kind"], version["name"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever Kubernetes would refuse them:
    objects that list their properties and neither preserve unknown fields nor say
    what extra keys may hold."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is ObjectMeta, which the CRD leaves open: allow it whole.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@pytest.fixture(scope="module")
def crd_schemas():
    if not CRDS.is_dir():
        pytest.fail(f"KubeRay CRDs not found at {CRDS}: the repository's sibling folder shared/ must hold them")
    return _crd_schemas()


def test_there_is_a_manifest_of_every_kind():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in MANIFESTS}
    assert kinds == {"RayCluster", "RayJob", "RayService", "RayCronJob"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_its_crd(path, crd_schemas):
    manifest = yaml.safe_load(path.read_text())
    group, version = manifest["apiVersion"].split("/")
    assert group == "ray.io" and version == "v1", manifest["apiVersion"]
    schema = crd_schemas[(manifest["kind"], version)]
    errors = sorted(jsonschema.Draft7Validator(_strict(schema)).iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    print(f"{path.name}: {manifest['kind']} valid against ray.io/{version} openAPIV3Schema")


def test_a_wrong_manifest_is_refused(crd_schemas):
    """The check has teeth: the fields KubeRay requires, and unknown ones, are caught."""
    manifest = yaml.safe_load((REPO / "cluster" / "kuberay" / "raycluster.yaml").read_text())
    del manifest["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    manifest["spec"]["workerGroupSpecs"][1]["replica"] = 3  # a typo of replicas
    validator = jsonschema.Draft7Validator(_strict(crd_schemas[("RayCluster", "v1")]))
    messages = [e.message for e in validator.iter_errors(manifest)]
    assert any("'maxReplicas' is a required property" in m for m in messages), messages
    assert any("'replica' was unexpected" in m for m in messages), messages


def test_rayservice_serve_config_is_one_ray_serve_accepts():
    from ray.serve.schema import ServeDeploySchema

    spec = yaml.safe_load((REPO / "cluster" / "kuberay" / "rayservice.yaml").read_text())["spec"]
    config = ServeDeploySchema.model_validate(yaml.safe_load(spec["serveConfigV2"]))
    assert config.applications[0].import_path == "graphtrain.serve.app:build"


def test_launcher_yaml_validates_against_rays_schema():
    import json

    config = yaml.safe_load(LAUNCHER.read_text())
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["gpu_trainer"]["docker"]["worker_image"].endswith("-gpu")


def _scripts(command: str) -> list[str]:
    return [token for token in shlex.split(command) if token.endswith(".py")]


def test_every_entrypoint_and_import_path_exists():
    entrypoints, imports = [], []
    for path in MANIFESTS:
        spec = yaml.safe_load(path.read_text())["spec"]
        for job in (spec, spec.get("jobTemplate") or {}):
            if "entrypoint" in job:
                entrypoints += _scripts(job["entrypoint"])
        if "serveConfigV2" in spec:
            imports += [app["import_path"] for app in yaml.safe_load(spec["serveConfigV2"])["applications"]]
    for job_file in (REPO / "jobs").glob("*.job.yaml"):
        entrypoints += _scripts(yaml.safe_load(job_file.read_text())["entrypoint"])
    assert entrypoints and imports
    missing = [e for e in entrypoints if not (REPO / e).is_file()]
    assert not missing, missing
    for import_path in imports:
        module, _, name = import_path.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), import_path


def test_job_files_name_only_what_ray_job_submission_accepts():
    """jobs/*.job.yaml are the keyword arguments of JobSubmissionClient.submit_job."""
    import inspect

    from ray.job_submission import JobSubmissionClient

    accepted = set(inspect.signature(JobSubmissionClient.submit_job).parameters) - {"self"}
    files = sorted((REPO / "jobs").glob("*.job.yaml"))
    assert {f.name for f in files} >= {"retrain.job.yaml", "serve.job.yaml"}
    for path in files:
        job = yaml.safe_load(path.read_text())
        assert set(job) <= accepted, (path.name, set(job) - accepted)
        assert os.path.basename(_scripts(job["entrypoint"])[0]) == path.name.replace(".job.yaml", ".py")
