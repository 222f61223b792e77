"""Command line of the models: ``python -m models COMMAND``.

Commands
--------
train     fit the retrievers and the ranker on the training window, evaluate them on the
          test window, print the table, write JSON and PNG, store the model with lineage
evaluate  print the evaluation table of the latest stored model (from its JSON report)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from feature_repo.config import load_settings
from feature_repo.errors import ShelfwiseError
from feature_repo.logs import setup_logging

logger = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    from models.training import TrainConfig, run_training

    settings = load_settings()
    config = TrainConfig(
        n_candidates=args.n_candidates,
        n_train_cutoffs=args.cutoffs,
        max_users_per_cutoff=args.users or None,
        max_eval_users=args.eval_users or None,
        seed=args.seed,
        progress=not args.no_progress,
    )
    result = run_training(settings, config=config)
    print(result.table)
    print(f"\nmodel: {result.tag}")
    print(f"figures: {result.json_path}\nplot: {result.plot_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.api import load_recommender
    from models.evaluation import format_table

    settings = load_settings()
    recommender = load_recommender(args.version)
    path = settings.paths.reports / "evaluation.json"
    if not path.exists():
        print(f"no evaluation report at {path}; run `python -m models train` first")
        return 1
    payload = json.loads(path.read_text())
    if payload.get("model_version") != recommender.model_version:
        print(
            f"note: the report is of {payload.get('model_version')}, "
            f"the store's model is {recommender.model_version}"
        )
    print(format_table(payload["results"]))
    print(
        f"\nmodel: {payload.get('model_version')}  "
        f"feature service: {recommender.feature_service}  cut-off: {recommender.cutoff}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="fit, evaluate, store")
    train.add_argument("--n-candidates", type=int, default=200)
    train.add_argument("--cutoffs", type=int, default=3, help="training cut-offs")
    train.add_argument("--users", type=int, default=1000, help="users per cut-off (0: all)")
    train.add_argument("--eval-users", type=int, default=0, help="test users (0: all)")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--no-progress", action="store_true")
    evaluate = sub.add_parser("evaluate", help="print the latest evaluation")
    evaluate.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return cmd_train(args) if args.command == "train" else cmd_evaluate(args)
    except ShelfwiseError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
