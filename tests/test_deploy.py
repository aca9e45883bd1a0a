"""deploy/: the manifests parse and carry what lamap needs (no Kubernetes, SLURM or GPU here)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CRDS = Path(__file__).resolve().parent / "data" / "k8s"
"""The Dask Kubernetes operator's CRDs (tests/data/PROVENANCE.md says whence)."""
GPU_ARGS = ("--resources", "GPU=1")
WORKER_ENV = {"GDAL_CACHEMAX", "OMP_NUM_THREADS"}


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    return list(zip(args, args[1:], strict=False))


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


@pytest.fixture(scope="module")
def operator_docs() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    assert all(doc["apiVersion"] == "kubernetes.dask.org/v1" for doc in docs)
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["spec"]["containers"]


def _image_of_dockerfile_readme() -> str:
    match = re.search(r"docker build -f deploy/Dockerfile -t (\S+) \.", _readme())
    assert match, "deploy/README.md should show the docker build command with its tag"
    return match.group(1)


def _readme() -> str:
    return (DEPLOY / "README.md").read_text()


def test_operator_cluster_and_gpu_group(operator_docs) -> None:  # type: ignore[no-untyped-def]
    cluster, gpu = operator_docs["DaskCluster"], operator_docs["DaskWorkerGroup"]
    assert gpu["spec"]["cluster"] == cluster["metadata"]["name"]
    (gpu_worker,) = _containers(gpu["spec"]["worker"])
    assert gpu_worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert GPU_ARGS in _pairs(gpu_worker["args"])
    assert ("--nthreads", "1") in _pairs(gpu_worker["args"])
    assert gpu_worker["args"][:2] == ["dask", "worker"]
    (cpu_worker,) = _containers(cluster["spec"]["worker"])
    assert "nvidia.com/gpu" not in cpu_worker["resources"]["limits"]
    assert "--resources" not in cpu_worker["args"], "CPU workers must not advertise GPU"
    for worker in (cpu_worker, gpu_worker):
        assert WORKER_ENV <= set(_env(worker)), worker["name"]
        assert _env(worker)["OMP_NUM_THREADS"] == "1"


def test_operator_scheduler_ports_and_service(operator_docs) -> None:  # type: ignore[no-untyped-def]
    scheduler = operator_docs["DaskCluster"]["spec"]["scheduler"]
    (container,) = _containers(scheduler)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert ("--dashboard-address", ":8787") in _pairs(container["args"])
    service = scheduler["service"]
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {
        8786: "tcp-comm",
        8787: "http-dashboard",
    }
    assert service["selector"]["dask.org/cluster-name"] == "lamap"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_helm_values(helm) -> None:  # type: ignore[no-untyped-def]
    assert helm["jupyter"]["enabled"] is False
    assert helm["scheduler"]["servicePort"] == 8786
    assert helm["webUI"]["servicePort"] == 8787
    (gpu,) = helm["additional_worker_groups"]
    assert GPU_ARGS in _pairs(gpu["extraArgs"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["threads_per_worker"] == 1
    assert "nvidia.com/gpu" not in helm["worker"]["resources"]["limits"]
    for group in (helm["worker"], gpu):
        assert WORKER_ENV <= {item["name"] for item in group["env"]}


def test_one_image_everywhere(operator_docs, helm) -> None:  # type: ignore[no-untyped-def]
    images = {
        container["image"]
        for spec in (
            operator_docs["DaskCluster"]["spec"]["scheduler"],
            operator_docs["DaskCluster"]["spec"]["worker"],
            operator_docs["DaskWorkerGroup"]["spec"]["worker"],
        )
        for container in _containers(spec)
    }
    images |= {
        f"{helm[part]['image']['repository']}:{helm[part]['image']['tag']}"
        for part in ("scheduler", "worker")
    }
    images.add(_image_of_dockerfile_readme())
    assert len(images) == 1, images


def test_dockerfile_cuda_base_installs_lamap_and_helm_shims(helm) -> None:  # type: ignore[no-untyped-def]
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and "cuda" in base.group(1) and base.group(1).startswith("pytorch/pytorch:")
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    install = next(line for line in text.splitlines() if line.startswith("RUN python -m pip"))
    assert 'pip install ".[s3,gcs,az]"' in install, "s3fs, gcsfs, adlfs: cloud stores"
    assert "-c " not in install and "torch" not in install
    assert "import torch, rasterio, s3fs, gcsfs, adlfs, lamap" in text
    assert "torch.version.cuda" in text, "the build should fail if pip replaced CUDA torch"
    for command in ("dask-scheduler", "dask-worker"):
        assert f"/usr/local/bin/{command}" in text
    assert helm["worker"]["image"]["dask_worker"] == "dask-worker"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignore


def _slurm_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "lamap_slurm_recipe", DEPLOY / "slurm" / "cluster.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slurm_recipe_parses_without_dask_jobqueue(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    source = (DEPLOY / "slurm" / "cluster.py").read_text()
    tree = ast.parse(source)
    top_level = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert "dask_jobqueue" not in top_level, "import dask-jobqueue inside main() only"
    assert "dask_jobqueue" in source
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    module = _slurm_module()
    options = module.build_parser().parse_args(["--partition", "gpu", "--jobs", "3"])
    kwargs = module.cluster_kwargs(options)
    assert kwargs["job_extra_directives"] == ["--gres=gpu:1"]
    assert list(GPU_ARGS) == kwargs["worker_extra_args"][:2]
    assert kwargs["cores"] == 1 and kwargs["processes"] == 1, "one thread per GPU worker"
    assert kwargs["queue"] == "gpu"
    assert kwargs["scheduler_options"]["dashboard_address"].startswith("127.0.0.1:")
    assert module.main(["--jobs", "1"]) == 2, "a clear exit without dask-jobqueue"


def test_readme_says_how_to_run_and_reach_the_dashboard() -> None:
    readme = _readme()
    for needed in (
        "lamap map --scheduler tcp://lamap-scheduler:8786",
        "kubectl port-forward svc/lamap-scheduler 8786:8786 8787:8787",
        "kubectl port-forward svc/lamap-dask-scheduler",
        "--device cuda",
        "ssh -N -L 8787:127.0.0.1:8787",
        "deploy/slurm/cluster.py",
        "helm install lamap dask/dask -f deploy/helm/values.yaml",
        "kubectl apply -f deploy/kubernetes/daskcluster.yaml",
    ):
        assert needed in readme, needed


# --------------------------------------------------------------------------- operator CRDs


def _crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the operator's CRD for ``kind``, version v1."""
    crd = yaml.safe_load((CRDS / f"{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == "kubernetes.dask.org"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return dict(version["schema"]["openAPIV3Schema"])


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(_crd_schema(doc["kind"]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]  # fmt: skip


def test_manifests_match_the_operators_crd_schemas(operator_docs) -> None:  # type: ignore[no-untyped-def]
    for kind, doc in operator_docs.items():
        assert _crd_errors(doc) == [], kind


def test_a_numeric_gpu_quantity_is_what_the_crd_refuses(operator_docs) -> None:  # type: ignore[no-untyped-def]
    import copy

    broken = copy.deepcopy(operator_docs["DaskWorkerGroup"])
    (container,) = _containers(broken["spec"]["worker"])
    container["resources"]["limits"]["nvidia.com/gpu"] = 1  # what the manifest had
    errors = _crd_errors(broken)
    assert len(errors) == 1 and "nvidia.com/gpu" in errors[0] and "'string'" in errors[0], errors
