"""Shelfwise feature repository: schema, time split, ingest, feature pipelines and the
Feast definitions that every other stage reads through the registry."""

from __future__ import annotations

import os

# Nothing in this project may call out: switch the libraries' usage telemetry off as soon
# as any Shelfwise package is imported, before Feast, BentoML or Evidently are.
for _name, _value in (
    ("FEAST_USAGE", "False"),
    ("BENTOML_DO_NOT_TRACK", "true"),
    ("DO_NOT_TRACK", "1"),
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("EVIDENTLY_DISABLE_TELEMETRY", "1"),
):
    os.environ.setdefault(_name, _value)
