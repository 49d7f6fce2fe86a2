"""tritonx-analyze: search model configurations for throughput and latency.

Like Triton's Model Analyzer: candidate configs are loaded one after another into
one tritonx server the tool starts (explicit mode), measured with a perf command
(tritonx-perf or perf_analyzer) over a concurrency range, and ranked under the
user's constraints; the result is an HTML report, a CSV of every measurement and
the winning config.pbtxt in a repository ready to serve.
"""
