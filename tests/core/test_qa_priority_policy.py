"""Per-priority-level queue policies of the dynamic batcher, after Triton's
L0_model_queue test_priority_with_policy, as a differential test against Triton
2.51: level 1 DELAYs a request whose timeout expired, level 2 REJECTs one.

A delayed request goes behind the requests of its own level that have not
expired, but still ahead of every request of a lower level (Triton keeps a
delayed queue per level). Triton's QA reads this from response times against a
sleeping model; here the batch only forms once its rows fill the preferred size
(the queue delay is a minute), and the test fixes the order requests arrive in
by waiting for each to be counted as pending before sending the next. The model
answers each request with its position in the execution, which is the order
the batcher chose.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from grpcutil import wait_until
from serverutil import RunningServer, differential, run_either
from testmodels import write_model

from .test_qa_model_queue import MODEL, config, counts, failures, send_http

# Both levels time requests out after a minute unless a request asks for less;
# expired, a level-1 request is delayed, a level-2 one refused.
POLICY = """
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy {
    timeout_action: DELAY
    allow_timeout_override: true
    default_timeout_microseconds: 60000000
  }
  priority_queue_policy {
    key: 2
    value: {
      timeout_action: REJECT
      allow_timeout_override: true
      default_timeout_microseconds: 60000000
    }
  }
"""


def queued(
    server: RunningServer,
    pool: concurrent.futures.ThreadPoolExecutor,
    batch: int,
    value: float,
    **options: Any,
) -> concurrent.futures.Future[dict[str, Any]]:
    """Sends one request to "policy" and returns once it is counted as pending."""
    before = server.pending_requests("policy")
    future = pool.submit(send_http, server.http_url, "policy", batch, value, **options)
    wait_until(
        lambda: server.pending_requests("policy") == before + 1,
        f"the request of value {value} to be queued",
    )
    return future


def test_delayed_request_stays_ahead_of_lower_levels(tmp_path: Path) -> None:
    write_model(tmp_path, "policy", config("policy", POLICY), MODEL)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                # Level 2 refuses an expired request (a microsecond), although no
                # batch forms. (Sent while nothing is queued: Triton 2.51, refusing
                # one while a batch is pending, sends that batch at once, in an
                # order of its own, ignoring the preferred size.)
                refused = send_http(server.http_url, "policy", 2, 3.0, timeout=1)
                wait_until(
                    lambda: server.pending_requests("policy") == 0,
                    "the refused request to leave the queue",
                )
                first = queued(server, pool, 2, 1.0, priority=1)
                # Expires while it waits: delayed, not refused.
                delayed = queued(server, pool, 1, 2.0, priority=1, timeout=1)
                second = queued(server, pool, 2, 4.0, priority=1)
                # 2 + 1 + 2 + 3 rows: the batch of 8 forms.
                low = send_http(server.http_url, "policy", 3, 5.0)
                seen = {
                    "first": first.result(timeout=120),
                    "delayed": delayed.result(timeout=120),
                    "refused": refused,
                    "second": second.result(timeout=120),
                    "low": low,
                }
            # Triton counts after it answers: wait for the totals.
            wait_until(
                lambda: counts(server, "policy")["success"] == 4,
                "the four answered requests to be counted",
            )
            seen["failures"] = failures(server, "policy")
            seen["counts"] = counts(server, "policy")
            return seen

    seen = differential(scenario)
    assert seen["refused"] == {"status": "503", "message": "Request timeout expired"}
    positions = {
        name: seen[name]["POSITION"][0]
        for name in ("first", "second", "delayed", "low")
    }
    assert positions == {"first": 0, "second": 1, "delayed": 2, "low": 3}
    assert seen["delayed"]["OUTPUT0"] == [2.0]
    assert seen["counts"]["execution_count"] == 1
    assert seen["counts"]["inference_count"] == 8
