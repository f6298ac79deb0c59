"""``dwnas supernet init``: a freshly initialised supernet checkpoint of a params file's space."""

from __future__ import annotations

import argparse


def _init(args: argparse.Namespace) -> int:
    import torch

    from dwnas.config import load_params
    from dwnas.errors import DwnasError
    from dwnas.nn.checkpoint import save_supernet
    from dwnas.nn.supernet import Supernet
    from dwnas.space import Space

    params = load_params(args.params)
    if args.num_classes < 1:
        raise DwnasError(f"--num-classes must be >= 1 (got {args.num_classes})")
    if not 0.0 <= args.dropout < 1.0:
        raise DwnasError(f"--dropout must be in [0, 1) (got {args.dropout})")
    seed = params["seed"] if args.seed is None else args.seed
    space = Space.from_params(params["space"])
    torch.manual_seed(seed)
    supernet = Supernet(space, args.num_classes, args.dropout)
    save_supernet(args.out, supernet, {"stage": "init", "seed": seed, "params": params["name"]})
    n_params = sum(p.numel() for p in supernet.parameters())
    print(f"{args.out}: supernet of space {space.fingerprint()} ({space.size():.3e} archs, "
          f"{n_params / 1e6:.2f} M weights, {args.num_classes} classes)")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("supernet", help="weight-sharing supernet checkpoints")
    ssub = parser.add_subparsers(dest="supernet_command", metavar="ACTION", required=True)
    init = ssub.add_parser("init", help="write a freshly initialised supernet checkpoint")
    init.add_argument("--params", required=True, help="params YAML file (its 'space' section)")
    init.add_argument("--num-classes", type=int, required=True, help="classifier outputs")
    init.add_argument("--out", required=True, help="checkpoint file to write, e.g. supernet.pt")
    init.add_argument("--seed", type=int, default=None, help="init seed (default: params seed)")
    init.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    init.set_defaults(func=_init)
