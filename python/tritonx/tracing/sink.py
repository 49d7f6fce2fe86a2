"""Finished traces out of the core: Triton's JSON trace files (``mode=triton``) or
OpenTelemetry spans (``mode=opentelemetry``), written by one background thread that
drains the core's ``Tracer``.

File rules follow Triton's: a setting collects traces into a buffer; after
``log_frequency`` traces (or once its ``count`` is used up and every request it
sampled is finished) the buffer goes to ``<file>.<index>`` (index counting from 0
per file); what is left at shutdown goes to the indexed file when
``log_frequency`` is set, else to ``<file>`` itself, one JSON array in all.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from tritonx.tracing.settings import Setting

logger = logging.getLogger("tritonx.trace")

_RECV = {"HTTP_RECV_START", "HTTP_RECV_END", "GRPC_WAITREAD_START", "GRPC_WAITREAD_END"}


def render_record(record: dict[str, Any]) -> list[str]:
    """Triton's entries for one request's trace: the receive stamps, the model
    header, then one entry per timestamp and per tensor."""
    tid = record["id"]
    header: dict[str, Any] = {
        "id": tid,
        "model_name": record["model_name"],
        "model_version": record["model_version"],
    }
    if record["request_id"]:
        header["request_id"] = record["request_id"]
    if record["parent_id"]:
        header["parent_id"] = record["parent_id"]
    stamps = record["timestamps"]
    before = [s for s in stamps if s[0] in _RECV]
    after = [s for s in stamps if s[0] not in _RECV]
    out = [_stamp(tid, name, ns) for name, ns in before]
    out.append(_compact(header))
    out += [_stamp(tid, name, ns) for name, ns in after]
    for activity, name, data, shape, dtype in record["tensors"]:
        tensor = {"name": name, "data": data, "shape": shape, "dtype": dtype}
        out.append(_compact({"id": tid, "activity": activity, "tensor": tensor}))
    return out


def _stamp(tid: int, name: str, ns: int) -> str:
    return _compact({"id": tid, "timestamps": [{"name": name, "ns": ns}]})


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class TraceFile:
    """One trace file path, shared by every setting that names it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._index = 0
        self._lock = threading.Lock()
        self._base: Any = None

    def save(self, entries: list[str], to_index: bool) -> None:
        text = ",".join(entries)
        try:
            with self._lock:
                if to_index:
                    name = f"{self.path}.{self._index}"
                    self._index += 1
                    with open(name, "w") as out:
                        out.write("[" + text + "]")
                    return
                if self._base is None:
                    self._base = open(self.path, "w")  # noqa: SIM115 - kept open
                    self._base.write("[" + text)
                else:
                    self._base.write("," + text)
                self._base.flush()
        except OSError as exc:
            logger.error("failed creating trace file: %s", exc)

    def close(self) -> None:
        with self._lock:
            base, self._base = self._base, None
            if base is None:
                return
            try:
                base.write("]")
                base.close()
            except OSError as exc:  # a full disk: said once, as each failed save is
                logger.error("failed writing trace file %s: %s", self.path, exc)


@dataclass
class _Collected:
    setting: Setting
    file: TraceFile
    entries: list[str] = field(default_factory=list)
    in_stream: int = 0
    collected: int = 0


class FileSink:
    """Triton-mode output. Thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, TraceFile] = {}
        self._settings: dict[int, _Collected] = {}

    def register(self, setting: Setting) -> None:
        if setting.core is None or not setting.file:
            return
        with self._lock:
            file = self._files.setdefault(setting.file, TraceFile(setting.file))
            self._settings[int(setting.core.id)] = _Collected(setting, file)

    def write(
        self,
        setting_id: int,
        records: list[dict[str, Any]],
        parent: dict[str, str] | None = None,
        otel_ids: tuple[str, int] | None = None,
    ) -> None:
        with self._lock:
            state = self._settings.get(setting_id)
            if state is None:
                return
            for record in records:
                state.entries += render_record(record)
            state.in_stream += 1
            state.collected += 1
            core = state.setting.core
            frequency = state.setting.log_frequency
            used_up = core.count == 0 and state.collected == core.sampled
            if not (used_up or (frequency and state.in_stream >= frequency)):
                return
            entries, state.entries, state.in_stream = state.entries, [], 0
        state.file.save(entries, to_index=True)

    def close(self) -> None:
        with self._lock:
            pending = [s for s in self._settings.values() if s.in_stream]
            self._settings.clear()
            files = list(self._files.values())
        for state in pending:
            state.file.save(state.entries, to_index=state.setting.log_frequency != 0)
        for file in files:
            file.close()


class TraceWriter:
    """Drains the core's finished traces on one thread into a sink."""

    def __init__(self, tracer: Any, sink: Any) -> None:
        self._tracer = tracer
        self.sink = sink
        self._thread = threading.Thread(
            target=self._run, name="tritonx-trace", daemon=True
        )
        self._stopping = False
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopping = self._stopping
            for setting_id, parent, records, otel_ids in self._tracer.drain(200):
                try:
                    self.sink.write(setting_id, records, parent, otel_ids)
                except Exception:  # a broken exporter must not stop the writer
                    logger.exception("writing a trace failed")
            if stopping:
                break
        # Closed here, after the last write, so nothing drained is lost.
        try:
            self.sink.close()
        except Exception:
            logger.exception("closing the trace output failed")

    def stop(self) -> None:
        """Writes what is left (traces of requests already answered) and closes."""
        self._stopping = True
        self._tracer.close()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            logger.error("the trace writer did not finish; traces may be lost")
