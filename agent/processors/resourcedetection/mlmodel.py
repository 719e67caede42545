"""The `mlmodel` detector: which model, trained on what, by whom — as resource attributes.

Sources, later ones winning attribute by attribute:

1. an MLflow `MLmodel` file (YAML written by `mlflow.<flavor>.save_model`): `run_id`,
   `model_uuid`, `utc_time_created`, `flavors` with their versions (`sklearn_version`,
   `pytorch_version`, `python_version`, ...), and `metadata.name` / `metadata.version` when
   the model was logged with metadata;
2. a `model-card.yaml` (or `.yml`) next to the model, a small file a team writes:

       name: fraud-detector
       version: "3.2.0"
       owner: risk-ml@acme.example        # or trained_by
       training:                          # the keys may also sit at the top level
         run_id: 8c9d2f1e4b7a4f0e9d3c2b1a0f9e8d7c   # or run
         dataset: transactions              # or dataset: {name: ..., version: ...}
         dataset_version: "2024-q3"
         created: "2024-10-01T12:00:00Z"

3. `FLOWGLASS_MODEL_NAME`, `FLOWGLASS_MODEL_VERSION`, `FLOWGLASS_MODEL_RUN_ID`,
   `FLOWGLASS_MODEL_DATASET`, `FLOWGLASS_MODEL_DATASET_VERSION`,
   `FLOWGLASS_MODEL_TRAINED_BY`, `FLOWGLASS_MODEL_CREATED` — for what the files do not say,
   or to correct them at deploy time.

The files are looked for in `mlmodel.path` (a model directory, or the path of either file),
else in `FLOWGLASS_MODEL_PATH`. YAML is read with every scalar as a string, so a version
`1.10` stays `1.10`. Attributes written (see `ML_MODEL_ATTRIBUTES`): `ml.model.name`,
`ml.model.version`, `ml.model.run_id`, `ml.model.uuid`, `ml.model.dataset`,
`ml.model.dataset.version`, `ml.model.trained_by`, `ml.model.created` (ISO 8601, UTC),
`ml.model.flavor` and `ml.model.flavor.version` (the main flavor: the first that is not
`python_function`), `ml.model.flavors` (every flavor as `name=version`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.processors.resourcedetection.detectors import DetectionError, Host

ML_MODEL_ATTRIBUTES = {
    "ml.model.name": True,
    "ml.model.version": True,
    "ml.model.run_id": True,
    "ml.model.uuid": True,
    "ml.model.dataset": True,
    "ml.model.dataset.version": True,
    "ml.model.trained_by": True,
    "ml.model.created": True,
    "ml.model.flavor": True,
    "ml.model.flavor.version": True,
    "ml.model.flavors": True,
}

#: Environment variable → attribute.
ENV_VARIABLES = {
    "FLOWGLASS_MODEL_NAME": "ml.model.name",
    "FLOWGLASS_MODEL_VERSION": "ml.model.version",
    "FLOWGLASS_MODEL_RUN_ID": "ml.model.run_id",
    "FLOWGLASS_MODEL_DATASET": "ml.model.dataset",
    "FLOWGLASS_MODEL_DATASET_VERSION": "ml.model.dataset.version",
    "FLOWGLASS_MODEL_TRAINED_BY": "ml.model.trained_by",
    "FLOWGLASS_MODEL_CREATED": "ml.model.created",
}
MLMODEL_FILE = "MLmodel"
MODEL_CARD_FILES = ("model-card.yaml", "model-card.yml")
_MAX_FILE = 1 << 20
_OFFSET = re.compile(r"[+-]\d\d:?\d\d$")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise DetectionError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE:
        raise DetectionError(f"{path} is larger than 1 MiB; it is not a model description")
    try:
        doc = yaml.load(data.decode("utf-8", "replace"), Loader=yaml.BaseLoader)  # BaseLoader: every scalar stays a str
    except yaml.YAMLError as exc:
        raise DetectionError(f"{path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise DetectionError(f"{path} must hold a YAML mapping, not a {type(doc).__name__}")
    return doc


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value if value and value.lower() not in ("null", "~", "none") else None
    return None


def iso_created(value: str) -> str:
    """MLflow's `utc_time_created` ('2023-11-15 10:23:45.123456') as ISO 8601 UTC."""
    text = value.strip()
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)
    if "T" in text and not (text.endswith("Z") or _OFFSET.search(text)):
        text += "Z"
    return text


def from_mlmodel(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes from a parsed MLflow `MLmodel` file."""
    out: dict[str, Any] = {}
    if run_id := _text(doc.get("run_id")):
        out["ml.model.run_id"] = run_id
    if uuid := _text(doc.get("model_uuid")):
        out["ml.model.uuid"] = uuid
    if created := _text(doc.get("utc_time_created")):
        out["ml.model.created"] = iso_created(created)
    metadata = doc.get("metadata")
    if isinstance(metadata, dict):
        if name := _text(metadata.get("name")):
            out["ml.model.name"] = name
        if version := _text(metadata.get("version")):
            out["ml.model.version"] = version
    flavors = doc.get("flavors")
    if isinstance(flavors, dict) and flavors:
        listed: list[str] = []
        main: tuple[str, str | None] | None = None
        for name, options in flavors.items():
            version = None
            if isinstance(options, dict):
                version = _text(options.get(f"{name}_version"))
                if version is None and name == "python_function":
                    version = _text(options.get("python_version"))
            listed.append(f"{name}={version}" if version else str(name))
            if main is None and name != "python_function":
                main = (str(name), version)
        if main is None:
            first = next(iter(flavors))
            main = (str(first), listed[0].partition("=")[2] or None)
        out["ml.model.flavor"] = main[0]
        if main[1]:
            out["ml.model.flavor.version"] = main[1]
        out["ml.model.flavors"] = listed
    return out


def from_model_card(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes from a parsed `model-card.yaml` (see the module docstring)."""
    training = doc.get("training")
    sections: list[Mapping[str, Any]] = [doc]
    if isinstance(training, dict):
        sections.insert(0, training)

    def pick(*names: str) -> Any:
        for section in sections:
            for name in names:
                if name in section and section[name] not in (None, ""):
                    return section[name]
        return None

    out: dict[str, Any] = {}
    for attribute, names in (
        ("ml.model.name", ("name", "model_name")),
        ("ml.model.version", ("version", "model_version")),
        ("ml.model.run_id", ("run_id", "run", "training_run")),
        ("ml.model.trained_by", ("trained_by", "owner")),
    ):
        if value := _text(pick(*names)):
            out[attribute] = value
    if created := _text(pick("created", "trained_at")):
        out["ml.model.created"] = iso_created(created)
    dataset = pick("dataset", "training_dataset")
    if isinstance(dataset, dict):
        if name := _text(dataset.get("name")):
            out["ml.model.dataset"] = name
        if version := _text(dataset.get("version")):
            out["ml.model.dataset.version"] = version
    elif name := _text(dataset):
        out["ml.model.dataset"] = name
    if version := _text(pick("dataset_version", "training_dataset_version")):
        out["ml.model.dataset.version"] = version
    return out


def _files(location: Path) -> tuple[Path | None, Path | None]:
    """(MLmodel, model card) at `location`: a directory, or the path of either file."""
    if location.is_dir():
        mlmodel = location / MLMODEL_FILE
        cards = [location / n for n in MODEL_CARD_FILES]
    elif location.name == MLMODEL_FILE:
        mlmodel = location
        cards = [location.parent / n for n in MODEL_CARD_FILES]
    elif location.exists():
        mlmodel = location.parent / MLMODEL_FILE
        cards = [location]
    else:
        raise DetectionError(f"the model path {location} does not exist")
    card = next((c for c in cards if c.is_file()), None)
    return (mlmodel if mlmodel.is_file() else None), card


def detect_mlmodel(host: Host, path: str, enabled: Mapping[str, bool]) -> dict[str, Any]:
    """Model lineage from files at `path` (or `FLOWGLASS_MODEL_PATH`) and the environment."""
    out: dict[str, Any] = {}
    location = path or host.environ.get("FLOWGLASS_MODEL_PATH", "").strip()
    if location:
        mlmodel, card = _files(Path(location))
        if mlmodel is not None:
            out.update(from_mlmodel(_load_yaml(mlmodel)))
        if card is not None:
            out.update(from_model_card(_load_yaml(card)))
    for variable, attribute in ENV_VARIABLES.items():
        value = host.environ.get(variable, "").strip()
        if value:
            out[attribute] = iso_created(value) if attribute == "ml.model.created" else value
    return {k: v for k, v in out.items() if enabled.get(k, True)}
