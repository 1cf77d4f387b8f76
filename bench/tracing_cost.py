"""What tracing costs the worker: CPU per command and throughput at saturation, in paired rounds.

    .venv/bin/python -m bench.tracing_cost            # 5 rounds of 20,000 commands per mode
    .venv/bin/python -m bench.tracing_cost --quick    # 2 rounds of 3,000: proves it runs

Three modes, each a fresh worker on a fresh backlog (``bench.throughput.saturation``):

- ``a``: untraced traffic, the SDK off (``OTEL_SDK_DISABLED=true``): the reference;
- ``b``: traced traffic (every command carries a W3C ``traceparent``, a new trace each) with the
  SDK off: what passing the context through costs with the API only;
- ``c``: traced traffic with the SDK on, sampling every span (``always_on``) and exporting each
  over OTLP/HTTP (``http/protobuf``) to a sink in this process that decodes the requests, counts
  the spans and answers 200.

Rounds alternate the order of the modes, and the ratios b/a and c/a are taken within each round,
where the machine was the same; the table shows medians. CPU is the worker process's user + system
time from /proc, from the first event to the last. Needs the ``otel`` extra (the SDK and the OTLP
exporter) for mode ``c``. Writes bench/results/tracing_cost-*.json.
"""

import argparse
import gzip
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import median, save
from bench.throughput import run, saturation

MODES = ("a", "b", "c")
LABELS = {
    "a": "untraced traffic, API only",
    "b": "traced traffic, API only",
    "c": "traced traffic, SDK exporting every span",
}


class OtlpSink:
    """An OTLP/HTTP receiver that takes trace exports and drops them, counting requests and spans.

    Listens on 127.0.0.1 (a free port) in a thread of this process from ``start()`` to ``stop()``.
    """

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        sink = self
        self.requests = 0
        self.spans = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with sink._lock:
                    sink.requests += 1
                    sink.spans += count
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def take(self) -> tuple[int, int]:
        """Requests and spans received since the last call."""
        with self._lock:
            taken = (self.requests, self.spans)
            self.requests = self.spans = 0
        return taken


def traceparent() -> dict[str, Any]:
    """Headers of a command sent from inside a sampled trace of its own."""
    return {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}


def environment(mode: str, sink: OtlpSink) -> dict[str, str]:
    """The worker's OTEL_* variables for ``mode``; every one is set, so none is inherited."""
    if mode in ("a", "b"):
        return {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "outplan-worker-bench",
        }
    return {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "outplan-worker-bench",
    }


def one_round(n: int, commands: int, sink: OtlpSink) -> dict[str, Any]:
    """The three modes once, in an order rotated by ``n``; each mode's figures and the ratios."""
    order = MODES[n % 3 :] + MODES[: n % 3]
    measured: dict[str, Any] = {}
    for mode in order:
        sink.take()
        result = run(
            saturation(commands, 1, headers=None if mode == "a" else traceparent, env=environment(mode, sink))
        )
        requests, spans = sink.take()
        measured[mode] = {**result, "otlp_requests": requests, "spans_per_command": spans / commands}
    return {
        "order": "".join(order),
        **measured,
        "cpu_ratio_b_to_a": measured["b"]["cpu_ms_per_command"] / measured["a"]["cpu_ms_per_command"],
        "cpu_ratio_c_to_a": measured["c"]["cpu_ms_per_command"] / measured["a"]["cpu_ms_per_command"],
        "throughput_ratio_b_to_a": measured["b"]["per_second"] / measured["a"]["per_second"],
        "throughput_ratio_c_to_a": measured["c"]["per_second"] / measured["a"]["per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000, help="backlog per mode and round")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds; the table shows medians")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3,000 commands: proves it runs")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.rounds = 3_000, 2
    try:
        sink = OtlpSink()
    except ImportError:
        parser.error("mode c needs the otel extra: .venv/bin/uv pip install -e '.[otel]'")
    sink.start()
    rounds: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            r = one_round(n, args.commands, sink)
            rounds.append(r)
            print(
                f"round {n + 1} ({r['order']}): "
                + ", ".join(
                    f"{m} {r[m]['per_second']:,.0f}/s {r[m]['cpu_ms_per_command']:.3f} ms" for m in MODES
                )
                + f"; b/a {r['cpu_ratio_b_to_a']:.3f}, c/a {r['cpu_ratio_c_to_a']:.3f}",
                flush=True,
            )
    finally:
        sink.stop()
    results: dict[str, Any] = {"commands": args.commands, "rounds": rounds}
    for mode in MODES:
        results[mode] = {
            key: median([r[mode][key] for r in rounds])
            for key in ("per_second", "cpu_ms_per_command", "spans_per_command")
        }
    for key in ("cpu_ratio_b_to_a", "cpu_ratio_c_to_a", "throughput_ratio_b_to_a", "throughput_ratio_c_to_a"):
        results[key] = median([r[key] for r in rounds])
        results[f"{key}_range"] = (min(r[key] for r in rounds), max(r[key] for r in rounds))

    print(f"\nmedian of {args.rounds} round(s), {args.commands:,} commands each, one worker at saturation")
    print(f"{'mode':<48}{'commands/s':>12}{'CPU ms/command':>16}{'spans/command':>15}")
    for mode in MODES:
        m = results[mode]
        print(
            f"{mode}: {LABELS[mode]:<45}{m['per_second']:>12,.0f}{m['cpu_ms_per_command']:>16.3f}"
            f"{m['spans_per_command']:>15.2f}"
        )
    for pair in ("b_to_a", "c_to_a"):
        low, high = results[f"cpu_ratio_{pair}_range"]
        print(
            f"{pair.replace('_to_', '/')}: CPU per command {results[f'cpu_ratio_{pair}']:.3f}"
            f" ({low:.3f}-{high:.3f}), throughput {results[f'throughput_ratio_{pair}']:.3f}"
        )
    print(f"written to {save('tracing_cost', results)}")


if __name__ == "__main__":
    main()
