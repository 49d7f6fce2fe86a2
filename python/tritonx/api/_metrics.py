"""Custom metrics for in-process callers (Triton's ``tritonserver.MetricFamily``,
``Metric`` and ``MetricKind``): series in the same process-wide table as the
families Python models define with ``pb_utils.MetricFamily``, so they appear in
``Server.metrics()`` and on every metrics endpoint of this process. Thread safe:
the table's one lock guards every value."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence

from tritonx.backends.pb import metrics as table
from tritonx.backends.pb.errors import TritonModelException
from tritonx.errors import InvalidArgumentError


class MetricKind(enum.IntEnum):
    """Triton's ``TRITONSERVER_MetricKind`` members (HISTOGRAM: tritonx addition,
    as pb_utils has it)."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class MetricFamily:
    """``MetricFamily(kind, name, description)``. Families of one name share their
    series; making one with the same name but another kind or description raises
    InvalidArgumentError."""

    def __init__(self, kind: MetricKind, name: str, description: str) -> None:
        try:
            self._family = table.MetricFamily(name, description, int(kind))
        except TritonModelException as error:
            raise InvalidArgumentError(str(error)) from None
        self.kind = MetricKind(kind)
        self.name = name
        self.description = description


class Metric:
    """``Metric(family, labels)``: one labelled series of ``family``. Counters only
    go up (``increment`` with a negative value raises InvalidArgumentError);
    ``set_value`` is for gauges; ``observe`` and ``buckets`` for histograms."""

    def __init__(
        self,
        family: MetricFamily,
        labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> None:
        self.family = family
        try:
            self._metric = family._family.Metric(
                {str(k): str(v) for k, v in (labels or {}).items()}, buckets
            )
        except TritonModelException as error:
            raise InvalidArgumentError(str(error)) from None

    @property
    def kind(self) -> MetricKind:
        return self.family.kind

    @property
    def value(self) -> float:
        return self._call(self._metric.value)

    def increment(self, value: float) -> None:
        self._call(self._metric.increment, float(value))

    def set_value(self, value: float) -> None:
        self._call(self._metric.set, float(value))

    def observe(self, value: float) -> None:
        self._call(self._metric.observe, float(value))

    @staticmethod
    def _call(method: Callable[..., float | None], *args: float) -> float:
        try:
            result = method(*args)
        except TritonModelException as error:
            raise InvalidArgumentError(str(error)) from None
        return float(result) if result is not None else 0.0
