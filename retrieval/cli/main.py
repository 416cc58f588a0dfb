"""Command line: a thin caller of the Python API. ``retrieval --help`` lists the subcommands, which live
one module per group: ``collection_cmds`` (build, add, delete, reanchor, reencode), ``caption_cmds``
(suggest, caption), ``query_cmds`` (search, explain, classify, info) and ``service_cmds`` (serve, eval,
demo)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from retrieval.cli import caption_cmds, collection_cmds, query_cmds, service_cmds
from retrieval.errors import RetrievalError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retrieval", description="Cross-modal retrieval with encoders never trained together.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, device=True):
        sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: when stderr is a terminal)")
        if device:
            sp.add_argument("--device", default="cpu", help="torch device for encoders: cpu, cuda, auto (default cpu)")
        sp.add_argument("--runtime", choices=("auto", "torch", "onnx", "openvino"), default=None,
                        help="where the packaged encoders run (default $RETRIEVAL_RUNTIME, else auto: on a CPU, "
                             "images on ONNX Runtime, text and sound on OpenVINO when installed, else torch)")

    for group in (collection_cmds, caption_cmds, query_cmds, service_cmds):
        group.add_parsers(sub, common)
    return p


def _quiet_model_loading() -> None:
    """transformers draws a bar for every checkpoint it loads; the CLI shows its own bars instead.
    Said through huggingface_hub, whose setting transformers takes when it is imported: importing
    transformers here only to say it cost a server a second of start-up."""
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        transformers.utils.logging.disable_progress_bar()
        return
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        return
    disable_progress_bars()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a command line; positional arguments may come after options (``classify IDX --labels
    L a.png b.png``): argparse alone stops filling a ``FILES...`` argument at the first option and
    calls the rest unrecognised, so a subcommand with arguments left over is parsed again intermixed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        again = sub.parse_intermixed_args(argv[argv.index(args.command) + 1:])
        again.verbose, again.command = args.verbose, args.command
        args = again
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command in ("build", "add", "caption", "search", "classify", "demo", "eval", "serve") and not args.verbose:
        _quiet_model_loading()
    saved = os.environ.get("RETRIEVAL_RUNTIME")
    if getattr(args, "runtime", None):  # read where encoders are loaded (retrieval/encoders/runtime.py)
        os.environ["RETRIEVAL_RUNTIME"] = args.runtime
    try:
        return args.func(args)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written to the output", file=sys.stderr)
        return 130
    finally:  # main() may be called in-process (tests, notebooks): leave the environment as found
        if saved is None:
            os.environ.pop("RETRIEVAL_RUNTIME", None)
        else:
            os.environ["RETRIEVAL_RUNTIME"] = saved


if __name__ == "__main__":
    sys.exit(main())
