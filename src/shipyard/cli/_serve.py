"""``shipyard serve`` (a model server) and ``shipyard predict`` (batch scoring of Parquet).

The work lives in :mod:`shipyard.serving`; these commands only parse options and print.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["serve", "predict"]

_MODEL_REF = typer.Argument(..., metavar="MODEL_REF",
                            help="NAME@ALIAS, NAME/VERSION, NAME (the latest version) or a "
                            "models:/ URI.")


def serve(
    model_ref: str = _MODEL_REF,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes, each with its own copy "
                                "of the model."),
    max_batch_size: int = typer.Option(32, min=1, help="Most rows predicted in one model "
                                       "call (micro-batching; 1 turns it off)."),
    max_wait_ms: float = typer.Option(2.0, min=0, help="Longest wait for more requests to "
                                      "join a batch, taken only under concurrent load."),
    max_queue: int = typer.Option(1000, min=1, help="Requests that may wait for the model; "
                                  "beyond it the server answers 429 at once."),
    max_body_mb: float = typer.Option(16.0, min=0.001, help="Largest request body."),
    log_predictions: bool = typer.Option(True, "--log-predictions/--no-log-predictions",
                                         help="Append every prediction to "
                                         "<home>/predictions/<model>/ (Parquet)."),
    watch_interval: float = typer.Option(2.0, min=0, help="With NAME@ALIAS: seconds "
                                         "between registry checks; when the alias moves, "
                                         "each worker loads, warms and swaps to the new "
                                         "version with no failed request. 0: keep the "
                                         "version the alias names at start."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve a model over HTTP: KServe V2 (/v2/...), /predict, /feedback, /metrics.

    NAME@ALIAS is followed while the server runs (see --watch-interval); a version number
    is served until the server stops. A worker that dies is replaced.
    """
    from shipyard.client import Client
    from shipyard.registry import parse_model_uri
    from shipyard.serving import ServingConfig, resolve_model_ref, serve_model

    config = ServingConfig(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                           max_queue=max_queue, max_body_bytes=int(max_body_mb * 2**20),
                           log_predictions=log_predictions, watch_interval=watch_interval)
    uri = resolve_model_ref(model_ref)
    version = Client().registry.resolve(uri)  # fails fast on a bad reference
    following = parse_model_uri(uri).kind == "alias" and watch_interval > 0
    typer.echo(f"Serving {version.name} v{version.version} (digest {version.digest[:12]}) on "
               f"http://{host}:{port} with {workers} worker{'s' if workers > 1 else ''}: "
               f"/v2/models/{version.name}/infer, /predict, /metrics", err=True)
    if following:
        typer.echo(f"Following {model_ref}: checked every {watch_interval:g} s", err=True)
    # An alias followed is passed as is; anything else is pinned to the version just found.
    serve_model(uri if following else version.uri, config, host=host, port=port,
                workers=workers, log_level=log_level)


def predict(
    model_ref: str = _MODEL_REF,
    input_path: Path = typer.Option(..., "--input", "-i", metavar="PARQUET",
                                    dir_okay=False, help="Parquet file to score."),
    output_path: Path = typer.Option(..., "--output", "-o", metavar="PARQUET",
                                     dir_okay=False, help="Parquet file to write."),
    chunk_rows: int = typer.Option(100_000, min=1, help="Rows predicted (and written as "
                                   "one resumable part) at a time."),
    id_column: str | None = typer.Option(None, "--id-column", help="A row key: kept in the "
                                         "output, never given to the model."),
    features: str | None = typer.Option(None, "--features", metavar="SERVICE|auto",
                                        help="Join this feature service's features from the "
                                        "offline store to each row (point-in-time, by the "
                                        "input's entity keys) before scoring; 'auto': the "
                                        "service the model version lists."),
    timestamp_column: str | None = typer.Option(None, "--timestamp-column",
                                                help="With --features: each row's point in "
                                                "time. Default: event_timestamp when the "
                                                "input has it, else the job's start (the "
                                                "latest values within each view's TTL)."),
    on_missing: str = typer.Option("error", "--on-missing", metavar="error|null|skip",
                                   help="With --features, rows whose model features the "
                                   "offline store lacks: error (stop, naming the keys), "
                                   "null (score them with nulls) or skip (leave them out)."),
    keep_parts: bool = typer.Option(False, "--keep-parts", help="Keep <output>.parts/ (the "
                                    "per-chunk results that make a rerun resumable) after "
                                    "the output is written."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Show a progress bar on stderr."),
) -> None:
    """Score a Parquet file chunk by chunk: input columns (+ joined features) + prediction
    (+ probabilities).

    Parts go to <output>.parts/ first; rerunning the same command after an interruption
    skips the parts already written.
    """
    import warnings

    from shipyard.serving import ServedModel, predict_parquet

    served = ServedModel.load(model_ref)
    with warnings.catch_warnings():
        # a warning of the job (a feature service the model does not list) as one line
        warnings.showwarning = lambda message, *_: typer.echo(f"warning: {message}", err=True)
        warnings.simplefilter("always", UserWarning)
        result = predict_parquet(served, input_path, output_path, chunk_rows=chunk_rows,
                                 id_column=id_column, keep_parts=keep_parts,
                                 progress=progress, features=features,
                                 timestamp_column=timestamp_column, on_missing=on_missing)
    resumed = f", {result.skipped_chunks} resumed" if result.skipped_chunks else ""
    joined = f" with features of {result.feature_service}" if result.feature_service else ""
    left_out = (f"; {result.skipped_rows} rows without features left out"
                if result.skipped_rows else "")
    typer.echo(f"wrote {result.rows} rows scored by {served.name} v{served.version_label}"
               f"{joined} to {result.output} ({result.chunks} chunks{resumed}, "
               f"{result.seconds:.1f}s){left_out}")
