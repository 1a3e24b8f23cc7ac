"""The Serve config file for `serve deploy` is valid for Ray Serve and points at our builder."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.deployment import APP_NAME, MAX_ONGOING_REQUESTS, OpenDeepIngress

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "serve_app" / "serve_config.yaml"


def test_the_serve_config_is_a_valid_deploy_schema_for_our_application() -> None:
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (app,) = config.applications
    assert app.name == APP_NAME and app.route_prefix == "/"
    module, _, attr = app.import_path.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    (deployment,) = app.deployments
    assert deployment.name == OpenDeepIngress.name
    assert deployment.num_replicas == 1  # Gradio's queue keeps sessions in one replica
    assert deployment.max_ongoing_requests == MAX_ONGOING_REQUESTS


@pytest.mark.parametrize(("arg", "starts"), [("true", True), ("false", False), ("0", False)])
def test_the_builder_reads_start_actors(
    arg: str, starts: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from serve_app.deployment import app_builder  # noqa: PLC0415

    monkeypatch.setenv("OPENDEEP_VAR_DIR", str(tmp_path))
    from opendeep.settings import get_settings  # noqa: PLC0415

    get_settings.cache_clear()
    try:
        bound = app_builder({"start_actors": arg})
    finally:
        get_settings.cache_clear()
    init_args = bound._bound_deployment.init_args  # what the replica's constructor gets
    assert init_args[1] is starts
    assert init_args[0].var_dir == tmp_path
