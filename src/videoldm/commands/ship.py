"""`videoldm ship`: collect trained runs into the shipped-models tree, with a model card each."""
from __future__ import annotations

from pathlib import Path


def add_command(subparsers) -> None:
    s = subparsers.add_parser(
        "ship", help="collect trained runs into the shipped-models tree, with a model card each",
        description="Copy the final exports of the project's recipes (runs/...) into one self-contained folder "
                    "(references between them rewritten), with a MODEL_CARD.md per model; `videoldm generate` "
                    "reads that folder. `make models` trains every recipe and then runs this.")
    s.add_argument("--runs", default=".", help="folder the runs/ paths are relative to (default: here)")
    s.add_argument("--out", help="destination (default: the installed videoldm/shipped)")
    s.add_argument("--only", nargs="+", help="ship only these names (e.g. shapes/image shapes/temporal)")
    s.add_argument("--metrics", help="YAML of a measured line per shipped name, for the model cards (default: "
                                     "configs/shipped-metrics.yaml under --runs, if there)")
    s.add_argument("--full-precision", action="store_true",
                   help="keep the weights in float32 (default: stored as float16, half the size, loaded as float32)")
    s.set_defaults(func=run)


def run(args) -> int:
    import yaml

    from videoldm.inference.shipped import SHIPPED
    from videoldm.training.shipping import SHIPPED_RUNS, ship, tree_size

    names = args.only or list(SHIPPED_RUNS)
    unknown = [n for n in names if n not in SHIPPED_RUNS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; shipped: {', '.join(SHIPPED_RUNS)}")
    metrics_file = Path(args.metrics) if args.metrics else Path(args.runs) / "configs" / "shipped-metrics.yaml"
    if args.metrics and not metrics_file.is_file():
        raise FileNotFoundError(f"--metrics {metrics_file}: no such file")
    metrics = yaml.safe_load(metrics_file.read_text()) if metrics_file.is_file() else {}
    out = ship({n: Path(args.runs) / SHIPPED_RUNS[n] for n in names}, args.out or SHIPPED, metrics=metrics,
               root=args.runs, half=not args.full_precision)
    for name in names:
        print(f"{out / name}  {tree_size(out / name) / 2 ** 20:.1f} MiB")
    print(f"{tree_size(out) / 2 ** 20:.1f} MiB in all")
    return 0
