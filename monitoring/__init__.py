"""Drift monitoring: a reference window against a current one, for the ranker's features,
the service's scores and recommendation mix, and the quality of the latest ingest.

Each run writes a self-contained HTML report and a JSON summary under the reports folder,
refreshes an index page, and says whether retraining is due and why. Evidently computes
the per-column drift; it is imported only when a report is built, so the command line
starts fast.
"""

from __future__ import annotations

# Importing the feature repo switches every library's usage telemetry off (Evidently's
# included) before anything else is imported.
import feature_repo  # noqa: F401
