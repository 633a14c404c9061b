"""CLI: ``minivae explore RUN_DIR``: the latent explorer in the browser (see minivae/explore/).

    minivae explore runs/demo                      # http://127.0.0.1:8000/, opens the browser
    minivae explore runs/demo --port 0 --no-browser  # a free port, printed

The run is loaded by the same code as ``minivae eval`` (so a broken checkpoint or a run
still training gets the same one-line errors, exit 2). Ctrl-C stops the server: exit 130.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import webbrowser

from minivae.cli.models import (HELP, add_backend_flag, add_data_source_flags, load_run_or_report, non_negative_int,
                                positive_int, report_error)


MAX_K = 100_000  # importance samples per request: the page waits for its answer (eval is for big k)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_explore(args: argparse.Namespace) -> int:
    from minivae.explore import Explorer, ExploreError, make_server, run_metrics
    from minivae.cli.models import single_threaded_blas
    from minivae.training.trainer import load_data

    if args.port > 65535:
        return report_error("explore", f"--port must be in [0, 65535], got {args.port}")
    if args.k > MAX_K:
        return report_error("explore", f"--k {args.k}: ln p(x) is computed while the page waits; at most {MAX_K}")
    loaded = load_run_or_report("explore", args)
    if loaded is None:
        return 2
    config, model, _ = loaded
    with single_threaded_blas():
        try:
            _, test = load_data(config)
            explorer = Explorer(config, model, test, run_dir=args.run_dir, metrics=run_metrics(args.run_dir),
                                k=args.k)
        except ExploreError as err:
            return report_error("explore", str(err).removeprefix("explore: "))
        if not _is_loopback(args.host):
            print(f"minivae explore: warning: --host {args.host} is not a loopback address: anyone who can reach "
                  "this machine on the network can use the explorer", file=sys.stderr)
        try:
            server = make_server(explorer, args.host, args.port)
        except (OSError, socket.gaierror) as err:
            reason = err.strerror or err
            return report_error("explore", f"--host {args.host} --port {args.port}: cannot listen there ({reason})")
        host, port = server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        url = f"http://{shown}:{port}/"
        print(f"minivae explore: {config.model} on {config.data} ({explorer.latent}-D latent) at {url} "
              "(Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("\nminivae explore: stopped", file=sys.stderr)
            return 130
        finally:
            server.server_close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("explore", help="a local web page over a trained run's latent space", **HELP)
    p.add_argument("run_dir", help="the run folder (holds checkpoint.npz): vae, cvae, iwae, ae or dae on images")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (other than loopback: a warning)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="port; 0 picks a free one (printed)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--k", type=positive_int, default=1000, help="importance samples for an example's ln p(x)")
    add_data_source_flags(p)
    add_backend_flag(p)
    p.set_defaults(func=cmd_explore)
