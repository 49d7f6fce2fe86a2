"""The sequence batcher's idle timeout (`max_sequence_idle_microseconds`) with more
sequences than slots, as differential tests against Triton 2.51, for both
strategies: sequences idle past the limit give their slots to the backlog in
arrival order, a backlogged sequence's queued requests all run once it has a slot,
and every id ended that way is then unknown (a request without START is refused
with Triton's words; START begins it again).

One difference is kept on purpose and recorded here: Triton 2.51 counts a
sequence's idle time from its last request's arrival, even while that request (or
a later one) is executing or queued, so a sequence whose steps run longer than the
limit is ended under its client (the next request is refused), contradicting
Triton's own definition ("idle when it does not have any inference request queued
for the sequence"). tritonx counts from the last arrival or completion and never
while a request of the sequence is queued or executing: every sequence Triton
keeps, tritonx keeps too.

A test waits past the 300 ms limit with a sleep where the only sign of the reaper is
the refusal it causes; executions are held open with the gated model instead.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from grpcutil import wait_until
from serverutil import RunningServer, differential, reference_command, run_either

from .conftest import write_sequence_model
from .seqstream import SequenceStream, settled_request_counts

IDLE_US = 300_000
# Several times the limit: every sequence left idle this long has been ended.
PAST_IDLE_S = 1.5
NO_START = (
    "inference request for sequence {id} to model '{model}' must specify the START "
    "flag on the first request of the sequence"
)
STRATEGIES = ("direct", "oldest")


def _strategy(name: str, slots: int) -> str:
    """The config's strategy block for `slots` sequences per instance (direct
    has max_batch_size slots)."""
    return (
        "direct { }"
        if name == "direct"
        else f"oldest {{ max_candidate_sequences: {slots} }}"
    )


def _serve(
    stack: ExitStack,
    kind: str,
    repo: Path,
    model: str,
    strategy: str,
    *,
    slots: int,
    gated: bool = False,
) -> RunningServer:
    """`kind`'s server on a repository of one sequence model with `slots` slots.
    No implicit state (Triton 2.51's python backend does not carry one): OUTPUT is
    the request's INPUT, and CONTROLS what the model was handed."""
    write_sequence_model(
        repo,
        model,
        max_batch_size=slots,
        strategy=_strategy(strategy, slots),
        idle_us=IDLE_US,
        state=False,
        gated=gated,
    )
    return stack.enter_context(run_either(kind, repo))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_idle_sequences_hand_their_slots_to_the_backlog(
    tmp_path: Path, strategy: str
) -> None:
    model = f"idle_{strategy}"

    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server = _serve(stack, kind, tmp_path / kind, model, strategy, slots=2)
            a, b, c, d = (SequenceStream(server, model, seq) for seq in (1, 2, 3, 4))
            for stream in (a, b, c, d):
                stack.callback(stream.close)
            seen: dict[str, Any] = {}
            a.send(1, sequence_start=True)
            b.send(10, sequence_start=True)
            seen["holders"] = [a.answer(), b.answer()]
            # 3 (two requests) and then 4 wait in the backlog until 1 and 2 have
            # idled past the limit, then take their slots.
            c.send(100, sequence_start=True)
            c.send(101)
            d.send(1000, sequence_start=True)
            seen["backlogged"] = [c.answer(), c.answer(), d.answer()]
            time.sleep(PAST_IDLE_S)
            # Every id has been ended by now: each is unknown without START.
            a.send(2)
            b.send(20, sequence_end=True)
            c.send(102)
            d.send(1001, sequence_end=True)
            seen["ended"] = [s.answer() for s in (a, b, c, d)]
            a.send(3, sequence_start=True, sequence_end=True)
            seen["restarted"] = a.answer()
            seen["counts"] = settled_request_counts(server, model, success=6)
            return seen

    seen = differential(scenario)
    assert seen["holders"] == [[[1], [1, 0, 1, 1]], [[10], [1, 0, 1, 2]]]
    assert seen["backlogged"] == [
        [[100], [1, 0, 1, 3]],
        [[101], [0, 0, 1, 3]],
        [[1000], [1, 0, 1, 4]],
    ]
    assert seen["ended"] == [NO_START.format(id=i, model=model) for i in (1, 2, 3, 4)]
    assert seen["restarted"] == [[3], [1, 1, 1, 1]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_sequence_is_not_idle_while_its_requests_run_or_wait(
    tmp_path: Path, strategy: str
) -> None:
    model = f"busy_{strategy}"

    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        entered = repo / model / "ENTERED"

        def wait_entered() -> None:
            wait_until(entered.exists, "the gated execution to start")
            entered.unlink()

        with ExitStack() as stack:
            server = _serve(stack, kind, repo, model, strategy, slots=1, gated=True)
            seq = SequenceStream(server, model, 1)
            stack.callback(seq.close)
            # Never left shut (runs first): closing a stream waits for its answers.
            stack.callback((repo / model / "RELEASE").touch)
            seen: dict[str, Any] = {}
            # The next request arrives while the first has run past the limit.
            seq.send(-1, sequence_start=True)
            wait_entered()
            time.sleep(PAST_IDLE_S)
            seq.send(2)
            (repo / model / "RELEASE").touch()
            seen["running"] = [seq.answer(), seq.answer()]
            seq.send(3, sequence_end=True)
            seen["running_end"] = seq.answer()
            # A request queued behind a long execution, and one more sent when the
            # queued one has waited past the limit.
            seq.send(-5, sequence_start=True)
            seq.send(6)
            wait_entered()
            time.sleep(PAST_IDLE_S)
            seq.send(7)
            (repo / model / "RELEASE").touch()
            seen["queued"] = [seq.answer() for _ in range(3)]
            seq.send(8, sequence_end=True)
            seen["queued_end"] = seq.answer()
            return seen

    mine = scenario("tritonx")
    assert mine == {
        "running": [[[-1], [1, 0, 1, 1]], [[2], [0, 0, 1, 1]]],
        "running_end": [[3], [0, 1, 1, 1]],
        "queued": [[[-5], [1, 0, 1, 1]], [[6], [0, 0, 1, 1]], [[7], [0, 0, 1, 1]]],
        "queued_end": [[8], [0, 1, 1, 1]],
    }
    if reference_command() is not None:
        # Triton 2.51 ended the sequence a limit after each request's arrival; the
        # requests it had already queued still ran.
        ended = NO_START.format(id=1, model=model)
        assert scenario("reference") == {
            "running": [[[-1], [1, 0, 1, 1]], ended],
            "running_end": ended,
            "queued": [[[-5], [1, 0, 1, 1]], [[6], [0, 0, 1, 1]], ended],
            "queued_end": ended,
        }
