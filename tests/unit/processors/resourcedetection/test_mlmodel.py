"""The `mlmodel` detector: MLflow MLmodel files, model cards, FLOWGLASS_MODEL_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.processors.resourcedetection.detectors import DetectionError, Host
from agent.processors.resourcedetection.mlmodel import ML_MODEL_ATTRIBUTES, detect_mlmodel, iso_created

# What `mlflow.sklearn.log_model` writes (MLflow 2.x), trimmed of the signature.
MLMODEL_SKLEARN = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.10.12
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.3.0
mlflow_version: 2.8.0
model_size_bytes: 10934
model_uuid: 4a1b2c3d4e5f40718293a4b5c6d7e8f9
run_id: 8c9d2f1e4b7a4f0e9d3c2b1a0f9e8d7c
utc_time_created: '2023-11-15 10:23:45.123456'
"""

MLMODEL_PYTORCH = """\
artifact_path: model
flavors:
  python_function:
    data: data
    env:
      conda: conda.yaml
    loader_module: mlflow.pytorch
    pickle_module_name: mlflow.pytorch.pickle_module
    python_version: 3.11.5
  pytorch:
    code: null
    model_data: data
    pytorch_version: 2.1.0+cu121
metadata:
  name: resnet50
  version: "1.10"
mlflow_version: 2.9.2
model_uuid: 0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a
run_id: 1f2e3d4c5b6a79881726354453627181
utc_time_created: '2024-01-09 08:00:00.000001'
"""

MODEL_CARD = """\
name: fraud-detector
version: 3.2.0
owner: risk-ml@acme.example
training:
  run_id: override-run-42
  dataset:
    name: transactions
    version: 2024-q3
  created: 2024-10-01T12:00:00Z
"""

FLAT_CARD = """\
model_name: churn
model_version: 1.10
trained_by: team-growth
training_dataset: customers
dataset_version: 7
"""


def host(env: dict[str, str] | None = None) -> Host:
    return Host(environ=env or {})


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_mlflow_sklearn_model(tmp_path: Path) -> None:
    d = write(tmp_path / "model", {"MLmodel": MLMODEL_SKLEARN})
    assert detect_mlmodel(host(), str(d), ML_MODEL_ATTRIBUTES) == {
        "ml.model.run_id": "8c9d2f1e4b7a4f0e9d3c2b1a0f9e8d7c",
        "ml.model.uuid": "4a1b2c3d4e5f40718293a4b5c6d7e8f9",
        "ml.model.created": "2023-11-15T10:23:45.123456Z",
        "ml.model.flavor": "sklearn",
        "ml.model.flavor.version": "1.3.0",
        "ml.model.flavors": ["python_function=3.10.12", "sklearn=1.3.0"],
    }


def test_mlflow_pytorch_model_with_metadata_keeps_versions_as_written(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"MLmodel": MLMODEL_PYTORCH})
    out = detect_mlmodel(host(), str(d / "MLmodel"), ML_MODEL_ATTRIBUTES)
    assert out["ml.model.name"] == "resnet50"
    assert out["ml.model.version"] == "1.10"  # not the float 1.1
    assert out["ml.model.flavor"] == "pytorch" and out["ml.model.flavor.version"] == "2.1.0+cu121"


def test_model_card_wins_over_mlmodel_and_nested_dataset(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"MLmodel": MLMODEL_SKLEARN, "model-card.yaml": MODEL_CARD})
    out = detect_mlmodel(host(), str(d), ML_MODEL_ATTRIBUTES)
    assert out["ml.model.name"] == "fraud-detector"
    assert out["ml.model.version"] == "3.2.0"
    assert out["ml.model.trained_by"] == "risk-ml@acme.example"
    assert out["ml.model.run_id"] == "override-run-42"
    assert out["ml.model.dataset"] == "transactions" and out["ml.model.dataset.version"] == "2024-q3"
    assert out["ml.model.created"] == "2024-10-01T12:00:00Z"
    assert out["ml.model.uuid"] == "4a1b2c3d4e5f40718293a4b5c6d7e8f9"  # only the MLmodel says it


def test_flat_model_card_given_by_path(tmp_path: Path) -> None:
    card = tmp_path / "model-card.yml"
    card.write_text(FLAT_CARD)
    assert detect_mlmodel(host(), str(card), ML_MODEL_ATTRIBUTES) == {
        "ml.model.name": "churn", "ml.model.version": "1.10", "ml.model.trained_by": "team-growth",
        "ml.model.dataset": "customers", "ml.model.dataset.version": "7",
    }


def test_environment_variables_win_and_model_path_comes_from_the_environment(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"MLmodel": MLMODEL_SKLEARN})
    env = {"FLOWGLASS_MODEL_PATH": str(d), "FLOWGLASS_MODEL_NAME": "fraud", "FLOWGLASS_MODEL_VERSION": "7",
           "FLOWGLASS_MODEL_RUN_ID": "run-from-ci", "FLOWGLASS_MODEL_DATASET": "tx", "FLOWGLASS_MODEL_DATASET_VERSION": "v3",
           "FLOWGLASS_MODEL_TRAINED_BY": "ci-bot", "FLOWGLASS_MODEL_CREATED": "2024-02-03 04:05:06"}
    out = detect_mlmodel(host(env), "", ML_MODEL_ATTRIBUTES)
    assert out["ml.model.run_id"] == "run-from-ci"
    assert out["ml.model.created"] == "2024-02-03T04:05:06Z"
    assert (out["ml.model.name"], out["ml.model.version"], out["ml.model.dataset"]) == ("fraud", "7", "tx")
    assert out["ml.model.dataset.version"] == "v3" and out["ml.model.trained_by"] == "ci-bot"
    assert out["ml.model.flavor"] == "sklearn"


def test_only_variables_and_nothing_at_all() -> None:
    assert detect_mlmodel(host({"FLOWGLASS_MODEL_NAME": "x"}), "", ML_MODEL_ATTRIBUTES) == {"ml.model.name": "x"}
    assert detect_mlmodel(host(), "", ML_MODEL_ATTRIBUTES) == {}


def test_attributes_can_be_disabled(tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"MLmodel": MLMODEL_SKLEARN})
    enabled = {**ML_MODEL_ATTRIBUTES, "ml.model.flavors": False, "ml.model.uuid": False}
    out = detect_mlmodel(host(), str(d), enabled)
    assert "ml.model.flavors" not in out and "ml.model.uuid" not in out and "ml.model.run_id" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [("flavors: [unclosed", "not valid YAML"), ("- a list\n- not a mapping\n", "must hold a YAML mapping")],
)
def test_broken_files_are_detection_errors(tmp_path: Path, text: str, message: str) -> None:
    d = write(tmp_path / "m", {"MLmodel": text})
    with pytest.raises(DetectionError, match=message):
        detect_mlmodel(host(), str(d), ML_MODEL_ATTRIBUTES)


def test_a_missing_model_path_is_a_detection_error(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="does not exist"):
        detect_mlmodel(host(), str(tmp_path / "nope"), ML_MODEL_ATTRIBUTES)


def test_iso_created() -> None:
    assert iso_created("2023-11-15 10:23:45.123456") == "2023-11-15T10:23:45.123456Z"
    assert iso_created("2024-10-01T12:00:00+02:00") == "2024-10-01T12:00:00+02:00"
    assert iso_created("2024-10-01") == "2024-10-01"
