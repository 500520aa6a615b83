"""edged.postprocess.registry: one dict of decoders that the config, ``edged check`` and
Home Assistant discovery all read."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from edged import discovery
from edged.config import ModelConfig, Settings
from edged.postprocess import registry


def test_every_registered_decoder_loads_under_its_own_name() -> None:
    for name in registry.DECODERS:
        decoder = registry.load(name)
        assert decoder.name == name
        assert decoder.summary


def test_the_config_takes_exactly_the_registered_names() -> None:
    for name in registry.DECODERS:
        ModelConfig(path=Path("m.tflite"), postprocess=name)
    with pytest.raises(pydantic.ValidationError,
                       match="unknown postprocess 'boxes'; use one of classification, "
                             "detection, anomaly, raw, yolo, anchors, keypoints"):
        ModelConfig(path=Path("m.tflite"), postprocess="boxes")


def test_every_registered_decoder_has_property_tests() -> None:
    """A decoder is not registered without the property tests of issue 20 (that it is
    total on every output its layouts admit): tests/test_decoder_properties.py must have a
    builder for each name in DECODERS."""
    from tests.test_decoder_properties import BUILDERS

    assert sorted(BUILDERS) == sorted(registry.DECODERS)


def test_unknown_names_are_refused_by_load_too() -> None:
    with pytest.raises(ValueError, match="unknown postprocess 'nope'"):
        registry.load("nope")


def test_discovery_shows_what_each_decoder_says() -> None:
    models = {name: {"path": f"/m/{name}.tflite", "postprocess": name}
              for name in ("yolo", "keypoints", "segmentation", "raw")}
    routes = [{"name": name, "subscribe": f"cams/{name}", "model": name} for name in models]
    s = Settings(device_id="box", models=models, routes=routes, discovery={"enabled": True})
    catalog = discovery.Catalog(s)
    bodies = {e.route: catalog.config_body(e) for e in catalog.fixed()}
    assert bodies["yolo"]["value_template"] == "{{ value_json.result.count }}"
    assert bodies["yolo"]["state_class"] == "measurement"
    assert bodies["keypoints"]["state_class"] == "measurement"
    assert bodies["segmentation"]["value_template"] == "{{ value_json.result.count }}"
    assert [k.route for k in catalog.skipped] == ["raw"]  # nothing single to show
