"""``python -m storepulse.simulator run|burst|catalogue``: stream simulated traffic to Kinesis.

- ``run``: real-time loop. Every wall second it generates the next ``--acceleration`` simulated
  seconds, never past the clock, and sends them with the producer (or prints JSON lines with
  ``--dry-run``). With ``--backfill EVENTS`` it first sends the history the dashboard compares
  today with, then keeps those days live (``storepulse.simulator.backfill``). It stops after
  ``--duration`` wall seconds, or cleanly on SIGTERM/SIGINT (the platform's supervisor stops it
  with SIGTERM), writing ``--ground-truth`` if asked.
- ``burst``: send a traffic spike for one store now.
- ``catalogue``: print the generated business model as JSON (to seed the settings table).

One thread only: signals just set a flag that the loop checks between ticks, so a batch is
never cut in half.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from storepulse.clock import Clock, system_clock
from storepulse.simulator.backfill import HISTORY_SENT, Lane, SimulatorFactory, plan
from storepulse.simulator.engine import GroundTruth, Simulator
from storepulse.simulator.model import BusinessModel

log = logging.getLogger("storepulse.simulator")

TICK_SECONDS = 1.0
SLEEP_SLICE = 0.1  # how often a sleeping loop looks at the stop flag
MAX_LAG_SECONDS = 5.0  # further behind than this, stop catching up and restart the schedule


class _Stop:
    """Set by SIGTERM/SIGINT; checked by the loop (a handler must not interrupt a send)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum)  # no logging here: it may hold logging's lock


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- arguments ---------------------------------------------------------------------------------


def _iso_utc(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError("must be between 0 and 0.5")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="seed of the model and the events")
    parser.add_argument("--stores", type=int, default=2, help="number of stores")
    parser.add_argument(
        "--timezone",
        action="append",
        dest="timezones",
        metavar="ZONE",
        help="IANA time zone of the stores, repeat for one per store (default Europe/Paris)",
    )
    parser.add_argument("--currency", default="EUR", help="ISO 4217 currency")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", help="Kinesis stream (default: the environment's events)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print JSON lines to stdout instead of sending"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storepulse.simulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="stream simulated traffic in (accelerated) real time")
    _model_options(run)
    _output_options(run)
    run.add_argument("--rate", type=_positive, default=0.2, help="events/s at the weekly peak")
    run.add_argument(
        "--acceleration",
        type=_positive,
        default=1.0,
        help="simulated seconds per wall second; events are never dated after the clock, so "
        "above 1 it only makes a past --start catch up faster",
    )
    run.add_argument("--duration", type=_positive, help="stop after this many wall seconds")
    run.add_argument("--start", type=_iso_utc, help="simulated start, ISO 8601 (default: now)")
    run.add_argument(
        "--backfill",
        type=_count,
        default=0,
        metavar="EVENTS",
        help="first send about EVENTS events of history (today so far, yesterday and last week "
        "up to the same time, at --rate or below), then keep those days live",
    )
    run.add_argument("--ground-truth", type=Path, metavar="PATH", help="write it here on exit")
    run.add_argument("--late-fraction", type=_fraction, default=0.0, help="POS events sent late")
    run.add_argument(
        "--malformed-fraction", type=_fraction, default=0.0, help="share of invalid records"
    )
    run.add_argument(
        "--no-wait", action="store_true", help="do not wait between ticks (as fast as possible)"
    )

    burst = commands.add_parser("burst", help="send a traffic spike for one store now")
    _model_options(burst)
    _output_options(burst)
    burst.add_argument("--store", required=True, help="store id, e.g. s-001")
    burst.add_argument("--size", type=int, default=500, help="page views (or door entries)")
    burst.add_argument("--kind", choices=("traffic", "web", "foot"), default="traffic")
    burst.add_argument("--over", type=_positive, default=60.0, help="seconds the spike lasts")

    catalogue = commands.add_parser("catalogue", help="print the business model as JSON")
    _model_options(catalogue)
    return parser


def _model(args: argparse.Namespace) -> BusinessModel:
    return BusinessModel.generate(
        args.seed,
        stores=args.stores,
        timezones=tuple(args.timezones or ("Europe/Paris",)),
        currency=args.currency,
    )


# --- output ------------------------------------------------------------------------------------


class _Output:
    """Where batches go: the Kinesis producer, or stdout for ``--dry-run``."""

    def __init__(self, stream: str | None, dry_run: bool) -> None:
        self._producer: Any = None
        if not dry_run:
            self._producer = _producer(stream)

    def send(self, events: list[Any]) -> int:
        if self._producer is None:
            return self._print([event.to_json() for event in events])
        return self._producer.send(events).records_sent if events else 0

    def send_raw(self, records: list[tuple[bytes, str]]) -> int:
        if self._producer is None:
            return self._print([payload for payload, _ in records])
        return self._producer.send_raw(records).records_sent if records else 0

    @staticmethod
    def _print(payloads: list[bytes]) -> int:
        sys.stdout.buffer.write(b"".join(payload + b"\n" for payload in payloads))
        sys.stdout.buffer.flush()
        return len(payloads)


def _producer(stream: str | None) -> Any:
    try:  # lazy: boto3 and the producer only load when sending
        from storepulse.producer import KinesisProducer
    except ImportError as exc:
        raise _UsageError(f"cannot send without the producer ({exc}); use --dry-run") from exc
    if stream is None:
        from storepulse.config import settings

        stream = settings().resource_name("events")
    log.info("sending to Kinesis stream %s", stream)
    return KinesisProducer(stream_name=stream)


class _UsageError(Exception):
    """A problem with the command line or the environment, reported without a traceback."""


# --- commands ----------------------------------------------------------------------------------


def _records(sim: Simulator, start: datetime, end: datetime) -> list[Any]:
    """Events, or (payload, partition key) records when some must be malformed."""
    if sim.malformed_fraction:
        return list(sim.raw_records_between(start, end))
    return list(sim.events_between(start, end))


def _send(output: _Output, records: list[Any], malformed: bool) -> int:
    return output.send_raw(records) if malformed else output.send(records)


def _tick(lanes: list[Lane], output: _Output, wall_seconds: float, now: datetime) -> int:
    """One put for all lanes: on the embedded AWS a put costs more as the stream grows."""
    records = [r for lane in lanes for r in _records(lane.sim, *lane.window(wall_seconds, now))]
    return _send(output, records, bool(lanes[0].sim.malformed_fraction))


def _pause(deadline: float, stop: _Stop, clock: Callable[[], float] = time.monotonic) -> None:
    while not stop.requested and (left := deadline - clock()) > 0:
        time.sleep(min(SLEEP_SLICE, left))


def _catch_up(deadline: float) -> float:
    """The next tick's deadline; when far behind (slow sends), restart the schedule from now
    rather than bursting to catch up."""
    if time.monotonic() - deadline > MAX_LAG_SECONDS:
        log.warning("falling behind real time; the simulated clock now runs slower")
        return time.monotonic()
    return deadline


def _loop(
    lanes: list[Lane], output: _Output, args: argparse.Namespace, stop: _Stop, clock: Clock
) -> None:
    elapsed, deadline = 0.0, time.monotonic()
    while not stop.requested:
        left = math.inf if args.duration is None else args.duration - elapsed
        if left <= 0:
            break
        wall = min(TICK_SECONDS, left)
        sent = _tick(lanes, output, wall, clock())
        elapsed += wall
        log.info("sent %d events, simulated clock %s", sent, lanes[-1].sim.clock.isoformat())
        deadline = _catch_up(deadline + wall)
        if not args.no_wait and left > wall:
            _pause(deadline, stop)
    if stop.signal is not None:
        log.info("stopped by %s", stop.signal.name)


def _factory(
    args: argparse.Namespace, model: BusinessModel, truth: GroundTruth
) -> SimulatorFactory:
    def simulator(start: datetime, rate: float) -> Simulator:
        return Simulator(
            model,
            args.seed,
            start,
            rate=rate,
            acceleration=args.acceleration,
            late_fraction=args.late_fraction,
            malformed_fraction=args.malformed_fraction,
            ground_truth=truth,  # one pipeline, so one ground truth for every simulated day
        )

    return simulator


def _backfill(
    args: argparse.Namespace,
    model: BusinessModel,
    now: datetime,
    simulator: SimulatorFactory,
    output: _Output,
    stop: _Stop,
) -> list[Lane]:
    """Send the history oldest first, as fast as the producer takes it; return the live lanes."""
    history, lanes = plan(model, now, args.backfill, args.rate, simulator)
    total = 0
    for sim, cutoff in history:
        if stop.requested:
            return lanes
        sent = _send(output, _records(sim, sim.start, cutoff), bool(sim.malformed_fraction))
        log.info("history from %s to %s: %d events at rate %.3g", sim.start, cutoff, sent, sim.rate)
        total += sent
    log.info("%s: %d events; going live", HISTORY_SENT, total)
    return lanes


def run(args: argparse.Namespace, model: BusinessModel, clock: Clock = system_clock) -> int:
    if args.backfill and args.start is not None:
        raise _UsageError("--backfill starts from the clock: it cannot take --start")
    truth = GroundTruth.for_model(model)
    simulator = _factory(args, model, truth)
    output = _Output(args.stream, args.dry_run)
    try:
        with _stop_on_signals() as stop:
            if args.backfill:
                lanes = _backfill(args, model, clock(), simulator, output, stop)
            else:
                lanes = [Lane(simulator(args.start or clock(), args.rate))]
            _loop(lanes, output, args, stop, clock)
    except BrokenPipeError:  # e.g. --dry-run | head: the reader is gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:  # the producer gave up (or AWS is unreachable): say so, then stop
        log.error("sending failed, stopping: %s", exc)
        return 1
    finally:
        if args.ground_truth is not None:
            truth.write(args.ground_truth)
            log.info("ground truth written to %s", args.ground_truth)
    return 0


def burst(args: argparse.Namespace, model: BusinessModel, clock: Clock = system_clock) -> int:
    try:
        model.store(args.store)
    except KeyError as exc:
        raise _UsageError(exc.args[0]) from None
    now = clock()
    # The spike is the minute that just ended, so no event is dated in the future.
    sim = Simulator(model, args.seed, now - timedelta(seconds=args.over))
    events = list(sim.burst(args.store, args.kind, args.size, duration=args.over))
    sent = _Output(args.stream, args.dry_run).send(events)
    log.info("burst for %s: sent %d records", args.store, sent)
    return 0


def catalogue(_args: argparse.Namespace, model: BusinessModel, _clock: Clock = system_clock) -> int:
    print(model.to_json())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, BusinessModel, Clock], int]] = {
    "run": run,
    "burst": burst,
    "catalogue": catalogue,
}


def main(argv: Sequence[str] | None = None, clock: Clock = system_clock) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        model = _model(args)
    except ValueError as exc:  # bad model options (time zone, currency, ...)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args, model, clock)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
