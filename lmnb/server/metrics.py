"""``GET /metrics``: the engine's and the server's counters in Prometheus text format."""

from __future__ import annotations

from typing import Any

from .stats import ServerStats


def render(engine: Any, stats: ServerStats) -> tuple[bytes, str]:
    """Return (body, content type). Values are read fresh on every scrape; nothing is kept here."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Collector:
        def collect(self):  # noqa: ANN202 - prometheus_client's protocol
            st = dict(engine.stats)
            reqs = CounterMetricFamily("lmnb_http_requests", "HTTP requests served, by path and status",
                                       labels=["path", "status"])
            with stats._lock:
                counts = list(stats.counts.items())
            for (path, status), n in sorted(counts):
                reqs.add_metric([path, str(status)], n)
            yield reqs
            gens = CounterMetricFamily("lmnb_generations", "Generations finished by the engine (cells and HTTP), "
                                       "by outcome", labels=["outcome"])
            for outcome in ("stop", "length", "cancelled", "error"):
                gens.add_metric([outcome], st.get(f"requests_{outcome}", 0))
            yield gens
            yield CounterMetricFamily("lmnb_prompt_tokens", "Prompt tokens of finished generations",
                                      value=st["prompt_tokens"])
            yield CounterMetricFamily("lmnb_prompt_tokens_evaluated", "Prompt tokens evaluated (not reused "
                                      "from the KV cache)", value=st["prompt_tokens_evaluated"])
            yield CounterMetricFamily("lmnb_generated_tokens", "Tokens generated", value=st["generated_tokens"])
            yield CounterMetricFamily("lmnb_decode_calls", "llama_decode calls", value=st["decode_calls"])
            yield CounterMetricFamily("lmnb_cache_evictions", "Idle cached prompts dropped to make room in the "
                                      "shared KV cache or its RAM stash", value=st["cache_evictions"])  # fmt: skip
            yield CounterMetricFamily("lmnb_cache_stashed", "Idle cached prompts moved from the shared KV cache "
                                      "to RAM while others decode", value=st["cache_stashed"])  # fmt: skip
            yield CounterMetricFamily("lmnb_cache_restored", "Cached prompts put back in the KV cache from RAM "
                                      "for a request that continues them", value=st["cache_restored"])  # fmt: skip
            yield CounterMetricFamily("lmnb_sequences_paused", "Running sequences paused because the shared KV "
                                      "cache was full (they resume when there is room)", value=st["sequences_paused"])  # fmt: skip
            yield CounterMetricFamily("lmnb_prefix_tokens_shared", "Prompt tokens a new sequence took from another "
                                      "sequence's KV cache instead of evaluating them", value=st["prefix_tokens_shared"])
            yield CounterMetricFamily("lmnb_decoded_sequences", "Sum over decode calls of the sequences in the "
                                      "call (divide by decode_calls for the batching factor)",
                                      value=st["sequences_decoded"])
            status = engine.status()
            yield GaugeMetricFamily("lmnb_queue_depth", "Requests queued or running in the engine",
                                    value=status.queue_depth)
            yield GaugeMetricFamily("lmnb_http_requests_in_flight", "HTTP requests being handled (not "
                                    "counting this scrape)", value=max(stats.in_flight - 1, 0))
            yield GaugeMetricFamily("lmnb_http_requests_in_flight_max", "The most HTTP requests handled at once "
                                    "since the server started (scrapes included)", value=stats.in_flight_max)
            yield GaugeMetricFamily("lmnb_tokens_per_second", "Generation speed of the last finished request",
                                    value=status.last_tokens_per_s or 0.0)
            yield GaugeMetricFamily("lmnb_model_loaded", "1 when a model is loaded", value=int(status.loaded))
            yield GaugeMetricFamily("lmnb_process_resident_bytes", "Kernel process RSS", value=status.rss_bytes)
            yield GaugeMetricFamily("lmnb_uptime_seconds", "Seconds since the server started", value=stats.uptime_s)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
