"""The engine as a service: the backtest kernel run in paper mode, on a feed, driven by commands.

One loop, one thread, one writer of trading state. Each turn:

1. take a page of commands from the command table, protective ones first (`qlcore.control.priority`),
   and act on them in that order (`qlcore.engine.handlers`);
2. poll the feed through the ingestion gate; each good bar goes to the venue (matching), the risk
   engine, and the strategy manager (which hands it to the running strategies);
3. commit the event log (`StreamWriter.flush`): every order the strategies or commands created is
   durable *before* the venue may hold it;
4. flush the venue: it commits its own ledger, then reports acknowledgements and fills, which
   become events; commit the log again;
5. complete the commands in the command table; renew the heartbeat and the status snapshot.

A crash anywhere loses nothing that matters: an order is in the log before the venue can hold it,
and a venue report the log missed is found by reconciliation at the next start (`qlcore.engine.recovery`),
which also runs before any trading: rebuild the state from the log, reconcile with the venue, and
only then take commands and bars.

Time: paper mode runs on market time. The kernel's clock is the time of the last bar from the feed,
which replays real data (or a synthetic stream) at `speed` steps per wall second: 1 step per second
of 1-second bars is real time, 20 steps per second of daily bars is an accelerated clock. The wall
clock paces the feed and watches it (`qlcore.data.watch`): a feed silent for `feed_stale_s` is
alerted, for `feed_reduce_s` moves the account to REDUCING, and its next bar brings it back.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event as sqlalchemy_event

from qlcore.audit.log import AuditLog
from qlcore.audit.recorder import AuditRecorder
from qlcore.brokers.paper import PaperVenue
from qlcore.brokers.simulated import FillModel
from qlcore.control.commands import Command, CommandQueue
from qlcore.control.identity import NOT_AUTHORISED, CredentialError, Gatekeeper
from qlcore.control.keys import proven_admin
from qlcore.control.priority import HALT, PRIORITY, PRIORITY_LANES
from qlcore.control.users import USERS_FILE, UsersDirectory
from qlcore.data.conditions import RegimeConfig, VolatilityMonitor
from qlcore.data.feed import Feed, FeedClock, ReplayFeed, SyntheticIntradayFeed, WallFeedClock
from qlcore.data.quality import IngestionGate, QualityConfig
from qlcore.data.watch import FeedHealth, FeedWatch, WatchConfig
from qlcore.engine.clock import BacktestClock
from qlcore.engine.fill_terms import FillTerms
from qlcore.engine.kernel import Kernel
from qlcore.engine.snapshot import marked_equity
from qlcore.engine.status import (
    BLOCKED,
    RECONCILING,
    RUNNING,
    STOPPED,
    STOPPING,
    SUSPENDED,
    EngineLease,
)
from qlcore.events.facts import (
    CommandCompleted,
    DataQuarantined,
    EngineStarted,
    EngineStateRecorded,
    EngineStopped,
    FeedResumed,
    FeedStale,
    StoreFaulted,
    StoreRecovered,
    StrategyDeployed,
    StrategyFailed,
)
from qlcore.events.store import EventStore, StoreConflict
from qlcore.events.types import AccountFunded, Event, MarksUpdated, OrderFilled
from qlcore.execution.client import ExecutionClient
from qlcore.execution.ids import ClientOrderIds
from qlcore.execution.policy import ExecutionConfig
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.money import to_decimal
from qlcore.risk.chain import RiskChain
from qlcore.risk.defaults import LimitsOptOutRefused, engine_limits, in_force
from qlcore.risk.killswitch import halt, resume_trading
from qlcore.risk.modes import ACCOUNT, TradingMode
from qlcore.risk.monitors import RiskMonitors
from qlcore.store.checkpoint import Checkpointer, no_autocheckpoint
from qlcore.store.db import connect, project_data_dir, resolve_url, sqlite_synchronous
from qlcore.store.errors import StoreUnavailable, describe, is_store_error, unwritable_files
from qlcore.store.scrub import scrubber
from qlcore.strategies.faults import Fault, FaultPolicy
from qlcore.strategies.manager import StrategyManager, StrategyState

log = logging.getLogger("qlcore.engine")

NS = 1_000_000_000
HALT_CHECK_EVERY = 10  # commands of a page acted on between two looks for a waiting halt
HALT_KINDS = frozenset({HALT})
LAG_ALERT_S = 10.0  # an alert when the oldest untaken bar has been due this long
STORE_RETRY_FIRST_S, STORE_RETRY_MAX_S = 0.1, 5.0  # backoff of the retries of a failed store
FEED_WATCH = "feed-watch"  # the actor of the feed's own mode changes
ALL_SYMBOLS = "*"  # the symbol of a whole feed's FeedStale / FeedResumed
FEEDS = ("replay", "synthetic")
DEMO_STRATEGIES: tuple[dict[str, Any], ...] = (
    {"strategy_id": "demo-sma-aapl", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbols": ["AAPL"]},
    {"strategy_id": "demo-sma-msft", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "symbols": ["MSFT"]},
    {"strategy_id": "demo-meanrev-ibm", "strategy": "mean_reversion", "params": {}, "symbols": ["IBM"]},
)


@dataclass(frozen=True)
class EngineConfig:
    """Everything `qlcore engine` can be told. Paths default under the project's data folder."""

    engine_id: str = "engine"  # also the target of its commands in the command table
    url: str | None = None
    venue_path: Path | None = None
    feed: str = "replay"
    symbols: tuple[str, ...] = ("AAPL", "GOOG", "IBM", "MSFT")
    speed: float = 20.0  # feed steps per wall second
    start: str | None = None  # first date of the replayed data
    seed: int = 0  # synthetic feed
    initial_cash: Decimal = Decimal(1_000_000)
    default_capital: Decimal = Decimal(100_000)
    risk_config: Path | None = None  # None: the default limits file (qlcore.risk.defaults)
    no_limits: bool = False  # no limits at all: paper only, with admin_approval (check_limits_opt_out)
    admin_approval: str | None = None  # the admin's reason for no_limits, recorded in the audit log
    admin: str | None = None  # who gives it: an admin whose signing key is at hand (default: QLCORE_USER, the OS user)
    latency_ms: float = 0.0
    participation: float = 1.0
    fee_bps: Decimal = Decimal(0)
    min_fee: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    reject_symbols: frozenset[str] = frozenset()
    fill_on_arrival: bool = False  # False: the next bar's open, as the backtest; True: the last close on arrival
    poll_interval_s: float = 0.005  # idle sleep of the loop
    command_poll_s: float = 0.01  # how often the command table is read (a command waits at most this)
    heartbeat_s: float = 0.5
    max_feed_steps_per_turn: int = 500  # a feed faster than the engine is caught up over several turns
    max_commands_per_turn: int = 50  # a page of the command table; protective commands get a turn of their own
    derived_state_s: float = 5.0  # how often the monitors' and strategies' state is saved beside the log
    strategy_bar_budget_s: float | None = 5.0  # longest one on_bar may take before the strategy FAILS
    flatten_failed: bool = False  # also close the positions of a strategy that FAILED
    feed_stale_s: float = 5.0  # wall seconds without a bar (beyond one feed step) before an alert
    feed_reduce_s: float = 30.0  # ... before the account goes REDUCING (ACTIVE again at the next bar)
    feed_calendar: str | None = None  # an exchange whose sessions alone count (a live feed); None: all hours
    users_file: Path | None = None  # whose commands are believed: public keys and roles (default: data folder)
    demo: bool = False
    exit_when_done: bool = False  # stop when the feed is exhausted and no command is pending
    max_steps: int | None = None  # stop after this many feed steps (tests)

    def __post_init__(self) -> None:
        if self.feed not in FEEDS:
            raise ValueError(f"unknown feed {self.feed!r}; choose one of {', '.join(FEEDS)}")
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0 feed steps per second, got {self.speed}")
        if not self.symbols:
            raise ValueError("the engine needs at least one symbol")
        if self.max_feed_steps_per_turn < 1:
            raise ValueError(f"max_feed_steps_per_turn must be >= 1, got {self.max_feed_steps_per_turn}")
        if self.max_commands_per_turn < 1:
            raise ValueError(f"max_commands_per_turn must be >= 1, got {self.max_commands_per_turn}")
        self.watch_config()  # raises on bad limits

    @property
    def fill_terms(self) -> FillTerms:
        return FillTerms(self.fill_on_arrival, to_decimal(self.fee_bps), to_decimal(self.min_fee),
                         to_decimal(self.slippage_bps), self.latency_ms, self.participation)

    def watch_config(self) -> WatchConfig:
        return WatchConfig(self.feed_stale_s, self.feed_reduce_s, self.feed_calendar)

    @property
    def resolved_url(self) -> str:
        return resolve_url(self.url)

    @property
    def resolved_venue_path(self) -> Path:
        return self.venue_path or project_data_dir() / f"paper-venue-{self.engine_id}.sqlite"

    @property
    def resolved_users_file(self) -> Path:
        return self.users_file or project_data_dir() / USERS_FILE

    @property
    def stream(self) -> str:
        return f"engine-{self.engine_id}"


@dataclass
class _Counters:
    steps: int = 0
    bars: int = 0
    commands: int = 0
    store_faults: int = 0
    last_command_id: int = 0
    started_wall: float = field(default_factory=time.monotonic)


class EngineService:
    """Build with a config, then `run()` (blocking) until `stop()` or a signal."""

    def __init__(
        self, config: EngineConfig, *, feed: Feed | None = None, monotonic: Callable[[], float] = time.monotonic,
        wall_clock: FeedClock | None = None,
    ) -> None:
        self.config = config
        # the limits first, before any file is opened: an engine never runs without them by accident
        settings, self.limits_source = engine_limits(config.risk_config, no_limits=config.no_limits,
                                                     approval=config.admin_approval, mode="paper",
                                                     user=_limits_off_admin(config))
        self.limits_in_force = in_force(settings)
        self.wall: FeedClock = wall_clock or WallFeedClock()  # paces the feed and times its silence
        self.url = config.resolved_url
        self.db = connect(self.url)
        # commits without fsync (QLCORE_SQLITE_SYNC=NORMAL): checkpoints move to a background thread,
        # so that no commit of the loop pays for one (see qlcore.store.checkpoint)
        self._quiet_checkpoints = self.db.dialect.name == "sqlite" and sqlite_synchronous() == "NORMAL"
        if self._quiet_checkpoints:
            sqlalchemy_event.listen(self.db, "connect", no_autocheckpoint)
            self.db.dispose()  # pooled connections are made again, with the hook
        self.checkpointer: Checkpointer | None = None
        self.store = EventStore(engine=self.db)
        self.queue = CommandQueue(engine=self.db)
        # every command's credential is verified against the users file, re-read when it changes: no
        # command acts without a proven sender holding the role its kind needs (qlcore.control.identity)
        self.gatekeeper = Gatekeeper(UsersDirectory(config.resolved_users_file))
        self.lease = EngineLease(self.db, config.engine_id, "paper")
        self.instruments = {s: Instrument(s) for s in config.symbols}
        self.clock = BacktestClock(0)
        self.venue = PaperVenue(
            config.resolved_venue_path,
            fill_model=FillModel(config.fee_bps, config.min_fee, config.slippage_bps),
            latency_ms=config.latency_ms,
            participation=config.participation,
            reject_symbols=frozenset(config.reject_symbols),
            seed=config.seed,
            instruments=self.instruments,
            fill_on_arrival=config.fill_on_arrival,
        )
        if self._quiet_checkpoints:
            no_autocheckpoint(self.venue._ledger._conn)
        self.writer = self.store.writer(config.stream, batch_size=10_000_000)  # commits only where the loop says
        self.client = ExecutionClient(
            self.venue, clock=self.clock, record=self._emit_fact, config=ExecutionConfig(), sleep=time.sleep
        )
        # the pre-trade chain, built once from the limits: lifecycle -> trading modes -> runaway -> rules
        self.chain = RiskChain(settings)
        self.kernel = Kernel(
            clock=self.clock,
            broker=self.client,
            instruments=self.instruments,
            writer=self.writer,
            risk=self.chain,
            # a new session token at each start: ids never repeat across restarts, lost log tails or a
            # new store beside an existing venue ledger (qlcore.execution.ids)
            order_id_prefix=ClientOrderIds.for_engine(config.engine_id, time.time_ns()).prefix,
        )
        self.risk, self.modes, self.guard = self.chain.engine, self.chain.modes, self.chain.runaway
        self.chain.disable_listeners.append(self._disable)
        # `monotonic` times each strategy's on_bar against its budget (tests give their own clock)
        self.manager = StrategyManager(
            self.kernel, faults=FaultPolicy(config.strategy_bar_budget_s, config.flatten_failed), monotonic=monotonic,
        )
        self.monitors = RiskMonitors(self.kernel, self.modes, settings.monitors)
        self.monitors.attach()
        self.manager.event_listeners.append(self._on_lifecycle)
        # the audit trail: orders, fills, risk decisions, limit, mode and lifecycle changes, commands
        self.audit = AuditRecorder(AuditLog(engine=self.db, batch_size=10**9, conflict_retries=20), stream=config.stream)
        self.audit.skip = frozenset({MarksUpdated, CommandCompleted})  # commands get their own entry
        # the gate runs on market time, which stands still when a feed goes silent: its staleness is
        # off, and the feed watch measures silence on the wall clock instead (see start)
        self.gate = IngestionGate(
            QualityConfig(interval_ns=None if config.feed == "replay" else NS, stale_after_seconds=None, source=config.feed),
            _MarketClock(self.clock),
            sink=self._emit_fact,
            symbols=config.symbols,
        )
        # market conditions: realized volatility regimes per symbol (daily bars, or 1-second bars)
        bars_per_year = 252.0 if config.feed == "replay" else 252.0 * 23_400
        self.conditions = VolatilityMonitor(RegimeConfig(bars_per_year=bars_per_year), sink=self._emit_fact)
        self._feed = feed
        self.feed: Feed | None = None
        self.watch: FeedWatch | None = None
        self.state = RECONCILING
        self.counters = _Counters()
        self.alerts: list[dict[str, Any]] = []
        self.equity_curve: list[tuple[int, str]] = []  # the last 500 points, for the dashboards
        self.start_equity: Decimal | None = None  # at this start, after reconciliation: "P&L today"
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._last_beat = 0.0
        self._last_saved = time.monotonic()
        self._lagging = False
        self._last_take = 0.0
        self._last_marks: dict[str, Decimal] = {}
        self.resume_ts: int | None = None
        self.warmed = 0  # bars handed to strategies' `on_warmup` at this start
        self.restored: set[str] = set()  # strategies whose saved state was loaded at this start
        self.restored_ts: int | None = None  # the market time that state reflects
        self.reconciliation: Any = None
        self.recent_fills: list[OrderFilled] = []
        self.quarantined = 0
        self.stale_symbols: set[str] = set()
        self.store_fault: _StoreFault | None = None  # while SUSPENDED: why, and when to try again
        self._uncompleted: list[tuple[Command, tuple[bool, str]]] = []  # handled, not yet completed in the table
        self._unhandled: list[int] = []  # claimed when a store fault stopped the turn: given back at recovery
        self.kernel.fill_listeners.append(self._on_fill)
        self.bar_listeners: list[Callable[[Bar], None]] = []  # every bar past the gate (parity checks)
        from qlcore.engine.handlers import CommandHandlers

        self.handlers = CommandHandlers(self)

    # --- events ------------------------------------------------------------------------------------
    def _emit_fact(self, event: Event) -> None:
        t = type(event)
        if t is DataQuarantined:
            self.quarantined += 1
        elif t is FeedStale:
            self.stale_symbols.add(event.symbol)  # type: ignore[attr-defined]
        elif t is FeedResumed:
            self.stale_symbols.discard(event.symbol)  # type: ignore[attr-defined]
        self.kernel.emit(event)

    def _on_fill(self, fill: OrderFilled) -> None:
        self.recent_fills.append(fill)
        if len(self.recent_fills) > 400:
            del self.recent_fills[:-200]

    def alert(self, level: str, source: str, message: str) -> None:
        # alerts are stored (the status snapshot) and logged: an exception's text may carry a secret
        message = scrubber(urls=[self.url]).text(message)
        self.alerts.append({"ts": time.time_ns(), "level": level, "source": source, "message": message})
        del self.alerts[:-100]
        log.warning("%s: %s", source, message) if level != "info" else log.info("%s: %s", source, message)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Claim the engine id, rebuild from the log, reconcile with the venue; then trading may start."""
        from qlcore.engine.recovery import rebuild, reconcile

        self.lease.acquire()
        self.lease.beat(RECONCILING)
        rebuilt = rebuild(self)
        self.resume_ts = rebuilt.resume_ts
        # protective commands handled before the crash still supersede the commands sent before them
        # (not those refused unproven: a forged halt must not fence off the commands before it)
        self.handlers.fences.record_all([c for c in self.queue.fences_since_oldest_pending(self.config.engine_id)
                                         if not (c.reason or "").startswith(NOT_AUTHORISED)])
        # a credential already acted on is refused if sent again, across the restart too
        self.gatekeeper.remember(self.queue.credentials_since(time.time_ns() - int(self.gatekeeper.fresh_s * 1e9),
                                                              target=self.config.engine_id))
        fresh = rebuilt.events == 0
        # lifecycle and limit changes from now on go to the log, everything to the audit trail
        self.manager.event_listeners.append(self.writer.append)
        self.risk.event_listeners.append(self.writer.append)
        self.audit.attach(self.kernel)
        self.audit.watch(self.risk)
        self._audit_limits_off()
        for failure in rebuilt.failed:  # a strategy whose on_start raised as it was re-deployed: FAILED in the log
            self.writer.append(failure)
            self.kernel.bus.publish(failure)  # to the audit trail
        details = json.dumps({**json.loads(rebuilt.describe()), "fills": self.config.fill_terms.to_dict()}, sort_keys=True)
        self.kernel.emit(EngineStarted(self.clock.now, self.config.engine_id, "paper", os.getpid(), details))
        if fresh:
            self.kernel.emit(AccountFunded(self.clock.now, "main", self.config.initial_cash))
        self.reconciliation = reconcile(self)
        for failure in rebuilt.failed:  # failed as re-deployed: its orders go now that the log agrees with the venue
            self.manager.cancel_open(failure.strategy_id)  # type: ignore[attr-defined]
        self.writer.flush()
        self.audit.log.flush()
        if self.reconciliation.passed:
            self.state = RUNNING
        else:
            self.state = BLOCKED
            self.alert("error", "reconciliation", self.reconciliation.summary())
        self._load_strategy_states()
        self.warmed = self._warm_up()
        if self.warmed:
            self.alert("info", "strategies", f"warmed up on {self.warmed} bars from before the restart")
        self.start_equity = marked_equity(self.kernel.state)
        if fresh and self.config.demo:
            self._deploy_demo()
        self.feed = self._feed or self._make_feed()
        self.feed.start()
        # a restart finds the account REDUCING for a feed that was down: its next bar lifts it
        was_down = self.modes.cause(ACCOUNT) == FEED_WATCH
        self.watch = FeedWatch(self.config.watch_config(), self.wall, slack_s=1.0 / self.config.speed,
                               health=FeedHealth.DOWN if was_down else FeedHealth.LIVE)
        if self._quiet_checkpoints:
            database = self.db.url.database
            assert database is not None
            self.checkpointer = Checkpointer([database, self.venue.path]).start()
        self._beat(force=True)

    def _audit_limits_off(self) -> None:
        """An engine started without limits says so in the audit log (who, why) and in its alerts."""
        opt_out = self.limits_source.opt_out
        if opt_out is None:
            return
        import getpass

        self.audit.log.record(opt_out.user, "engine.limits_off", "account",
                              {"engine_id": self.config.engine_id, "mode": opt_out.mode, "reason": opt_out.reason,
                               "os_user": getpass.getuser(), "proven_by": "the admin's signing key"},
                              ts=self.clock.now)
        self.alert("warning", "risk", f"running without limits: {self.limits_source.describe()}")

    def _warm_up(self) -> int:
        """After a restart, hand the running strategies the bars before the resume point that their
        indicators need (`Strategy.warmup_bars`), and those after their saved state (`restored`), from
        the same source the feed replays. Returns the bars handed (0 on a fresh start, or with a feed
        given from outside)."""
        needs = self.manager.warmup_needs()
        # symbol -> the time of the saved state of the strategies on it: every bar after it is handed
        after: dict[str, int] = {} if self.restored_ts is None else {
            symbol: self.restored_ts for sid in self.restored for symbol in self.manager.strategy(sid).symbols}
        if self.resume_ts is None or not (needs or after) or self._feed is not None:
            return 0
        if self.config.feed == "replay":
            import numpy as np
            import pandas as pd

            from qlcore.data.sample import load_sample

            frames = {}
            for symbol in needs.keys() | after.keys():
                data = load_sample(symbol).loc[self.config.start:pd.Timestamp(self.resume_ts)]
                keep = np.zeros(len(data), dtype=bool)
                keep[max(len(data) - needs.get(symbol, 0), 0):] = True
                if symbol in after:
                    keep |= data.index > pd.Timestamp(after[symbol])
                frames[symbol] = data[keep]
            steps: Iterable[list[Bar]] = ReplayFeed(frames, step_seconds=None).steps()
        else:
            steps = SyntheticIntradayFeed.from_sample(self.config.symbols, seed=self.config.seed,
                                                      step_seconds=1.0 / self.config.speed).clean_bars()
        last = {symbol: deque[tuple[int, Bar]](maxlen=n) for symbol, n in needs.items()}
        newer: list[tuple[int, Bar]] = []  # (arrival order, bar) after a saved state: all of them
        order = 0
        for step in steps:
            if step[0].ts > self.resume_ts:
                break
            for bar in step:
                order += 1
                if bar.ts > after.get(bar.symbol, self.resume_ts):
                    newer.append((order, bar))
                elif bar.symbol in last:
                    last[bar.symbol].append((order, bar))
        chosen = sorted([*newer, *(x for bars in last.values() for x in bars)], key=lambda x: x[0])
        return self.manager.warm_up([bar for _, bar in chosen], self.restored)

    def _deploy_demo(self) -> None:
        for spec in DEMO_STRATEGIES:
            if all(s in self.instruments for s in spec["symbols"]):
                self.manager.deploy(
                    spec["strategy"],
                    spec["params"],
                    symbols=spec["symbols"],
                    allocation=self.config.default_capital,
                    strategy_id=spec["strategy_id"],
                    actor="engine:demo",
                )
        self.writer.flush()

    def _make_feed(self) -> Feed:
        cfg = self.config
        step = 1.0 / cfg.speed
        if cfg.feed == "replay":
            import pandas as pd

            start: Any = cfg.start
            if self.resume_ts is not None:  # go on after the last bar the log has seen
                start = pd.Timestamp(self.resume_ts + 1)
            return ReplayFeed.from_sample(cfg.symbols, step_seconds=step, start=start, clock=self.wall)
        # the walk is deterministic: its steps up to the last one the log has seen are skipped, and
        # the next one is due at once
        return SyntheticIntradayFeed.from_sample(cfg.symbols, seed=cfg.seed, step_seconds=step, clock=self.wall,
                                                 after_ts=self.resume_ts)

    def stop(self, reason: str = "stopped") -> None:
        self._stop_reason = reason
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.stop(f"signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def run(self) -> None:
        """Start (unless started) and loop until stopped; always leaves the log and venue committed."""
        if self.feed is None:
            self.start()
        try:
            while not self._stop.is_set():
                busy = self.step()
                if self._done():
                    self.stop("feed exhausted")
                elif not busy:
                    time.sleep(self.config.poll_interval_s)
        finally:
            self.shutdown()

    def _done(self) -> bool:
        cfg = self.config
        if cfg.max_steps is not None and self.counters.steps >= cfg.max_steps:
            return True
        if not (cfg.exit_when_done and self.feed is not None and self.feed.exhausted) or self.state == SUSPENDED:
            return False
        try:
            return not self.queue.pending(cfg.engine_id, limit=1)
        except Exception as exc:
            if not is_store_error(exc):
                raise
            return False  # the next turn meets the fault and suspends

    def shutdown(self) -> None:
        suspended = self.state == SUSPENDED
        self.state = STOPPING
        try:
            self.writer.flush()
            if not suspended or self._store_writable():  # the venue commits only after the log
                self.venue.flush()
            self.writer.flush()
            self.manager.sample()
            self.kernel.emit(EngineStopped(self.clock.now, self.config.engine_id, self._stop_reason))
            # last: the state a replay of the log must reproduce (`qlcore replay --verify`)
            self.kernel.emit(EngineStateRecorded(self.clock.now, self.config.engine_id,
                                                 self.kernel.state.state_hash()))
            self.writer.flush()
            self.audit.log.flush()
            self._save_derived()
        except Exception as exc:
            if not is_store_error(exc):
                raise
            # what the log had not taken was never sent to the venue (it commits after the log) or,
            # for reports the venue committed, is found by reconciliation at the next start
            log.error("stopped while the store is unavailable: %s; %d event(s) and %d audit entr(ies) not "
                      "durable: the next start rebuilds from the log and reconciles with the venue",
                      describe(exc, self.url), self.writer.pending, self.audit.log.pending)
            self._stop_reason += "; store unavailable"
        finally:
            self.state = STOPPED
            self._try_beat()
            if self.feed is not None:
                self.feed.stop()
            if self.checkpointer is not None:
                self.checkpointer.stop()
            self.venue.close()

    # --- one turn of the loop ---------------------------------------------------------------------
    def step(self) -> bool:
        """One turn; True if it did anything (commands, bars or venue reports).

        A store fault anywhere in the turn suspends trading (`_suspend`); a suspended engine only
        retries the store (`_retry_store`) until the log is durable and reconciled again.
        """
        if self.state == SUSPENDED:
            return self._retry_store()
        try:
            return self._turn()
        except StoreConflict:
            raise  # another writer on this engine's stream: nothing to retry, the engine must stop
        except Exception as exc:
            if not is_store_error(exc):
                raise
            self._suspend(exc)
            return True

    def _turn(self) -> bool:
        commands = []
        now = time.monotonic()
        if now - self._last_beat >= self.config.heartbeat_s:
            self._check_store_files()
        if now - self._last_take >= self.config.command_poll_s:
            self._last_take = now
            commands = self._take_commands()
        commands = self._handle(commands)
        bars = self._poll_bars()
        before = self.kernel.events_emitted
        self.writer.flush()  # orders durable before the venue may hold them
        self.venue.advance_to(self.clock.now)
        self.venue.flush()  # the venue commits, then reports: acknowledgements, fills
        self.client.poll()  # after the reports: only a venue that stays silent times an order out
        self.writer.flush()
        self.audit.log.flush()  # other writers (dashboards, scheduler) may come first: chained after them
        self._complete_commands()
        self._beat()
        return bool(commands or bars or self.kernel.events_emitted != before)

    def _complete_commands(self, *, settle: bool = False) -> None:
        """Complete the handled commands in the table, in one transaction. After a store fault
        (`settle`), those a failed attempt did complete after all are left out."""
        if not self._uncompleted:
            return
        if settle:
            self._uncompleted = [(c, o) for c, o in self._uncompleted if not self.queue.status(c.id).done]
        self.queue.complete_all([(command.id, accepted, reason) for command, (accepted, reason) in self._uncompleted],
                                consumer=self.config.engine_id)
        self._uncompleted = []

    def _handle(self, commands: list[Command]) -> list[Command]:
        """Act on a page of commands in order; the commands acted on, their outcomes kept for completion
        (one by one, so that a store fault in the middle loses none). A page of orders stops when a halt
        is waiting (looked for every `HALT_CHECK_EVERY` commands): the rest go back to the queue, in
        their place, and the halt is taken at the next turn."""
        cid = self.config.engine_id
        for i, command in enumerate(commands):
            try:
                if (i and i % HALT_CHECK_EVERY == 0 and command.kind not in PRIORITY
                        and self.queue.waiting(cid, HALT_KINDS)):
                    self.queue.release([c.id for c in commands[i:]], consumer=cid)
                    return commands[:i]
            except Exception:
                self._unhandled = [c.id for c in commands[i:]]  # claimed, not acted on: released at recovery
                raise
            self._uncompleted.append((command, self.handlers.handle(command)))
        return commands

    def _take_commands(self) -> list[Command]:
        """A page of commands: the protective ones alone when there are any (a turn of their own, so
        that a halt is completed as soon as it is acted on), else the rest."""
        cid, page = self.config.engine_id, self.config.max_commands_per_turn
        return (self.queue.take(cid, target=cid, limit=page, lanes=PRIORITY_LANES)
                or self.queue.take(cid, target=cid, limit=page, lanes=(None,)))

    # --- store faults ------------------------------------------------------------------------------
    def _store_writable(self) -> bool:
        return not unwritable_files(self.url) and not unwritable_files(f"sqlite:///{self.venue.path}")

    def _check_store_files(self) -> None:
        """Raise `StoreUnavailable` when a file of the store or of the venue's ledger cannot be written:
        SQLite would notice a read-only database file only at a checkpoint (the WAL growing until
        then), and an immutable -shm file by a SIGBUS."""
        bad = unwritable_files(self.url) + unwritable_files(f"sqlite:///{self.venue.path}")
        if bad:
            raise StoreUnavailable(f"not writable: {', '.join(map(str, bad))}")

    def _suspend(self, exc: BaseException) -> None:
        """Stop trading at once: no command, bar or venue flush until the store takes the kept events."""
        reason = describe(exc, self.url)
        self.state = SUSPENDED
        self.counters.store_faults += 1
        self.store_fault = _StoreFault(reason, time.monotonic())
        # kept in the writer's buffer with the rest; durable, like them, once the store is back
        self.kernel.emit(StoreFaulted(self.clock.now, self.config.engine_id, reason, self.writer.pending))
        self.alert("critical", "store", f"{reason}; trading suspended: nothing reaches the venue until the "
                   f"log is durable again and reconciled ({self.writer.pending} event(s) kept)")
        self._try_beat()

    def _retry_store(self) -> bool:
        """One retry (after its backoff): commit what was kept, let the venue commit and report, complete
        the commands, reconcile; then trade again (or stay BLOCKED if positions differ)."""
        fault = self.store_fault
        assert fault is not None
        wait = fault.retry_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.05))
            return False
        fault.attempts += 1
        try:
            self._check_store_files()
            self.writer.flush()
            self.venue.flush()  # what the venue kept while the log was down, now that the log is durable
            self.writer.flush()
            self.audit.log.flush()
            self._complete_commands(settle=True)
            if self._unhandled:
                self.queue.release(self._unhandled, consumer=self.config.engine_id)
                self._unhandled = []
            from qlcore.engine.recovery import reconcile

            self.reconciliation = reconcile(self)
            suspended_s = round(time.monotonic() - fault.since, 3)
            self.kernel.emit(StoreRecovered(self.clock.now, self.config.engine_id, fault.attempts, suspended_s))
            self.writer.flush()
            self.audit.log.flush()
        except StoreConflict:
            raise
        except Exception as exc:
            if not is_store_error(exc):
                raise
            fault.reason = describe(exc, self.url)
            fault.backoff = min(fault.backoff * 2, STORE_RETRY_MAX_S)
            fault.retry_at = time.monotonic() + fault.backoff
            self._try_beat()
            return False
        self.store_fault = None
        if self.reconciliation.passed:
            self.state = RUNNING
            self.alert("info", "store", f"the store is back after {suspended_s:g} s ({fault.attempts} attempt(s)); "
                       f"{self.reconciliation.summary()}; trading again")
        else:
            self.state = BLOCKED
            self.alert("error", "reconciliation", self.reconciliation.summary())
        self._beat(force=True)
        return True

    def _try_beat(self) -> None:
        """A heartbeat that a failing store cannot turn into a crash (the row says SUSPENDED if it can).

        Not written at all while a store file is unwritable: SQLite meeting an immutable -shm file it
        has mapped ends the process with SIGBUS."""
        if not self._store_writable():
            return
        try:
            self._beat(force=True)
        except Exception as exc:
            if not is_store_error(exc):
                raise
            log.debug("heartbeat not written: %s", describe(exc, self.url))

    def complete(self, command: Command, accepted: bool, reason: str, *, signer: str | None = None,
                 proven: bool = True) -> None:
        """Record a command's outcome in the log (with the events its action produced) and the audit trail.

        The audit entry names who signed it (`signer`) beside the user it claims; a command whose
        credential did not verify (`proven` False) is recorded under ``unverified:<claimed user>``."""
        self.counters.commands += 1
        self.counters.last_command_id = max(self.counters.last_command_id, command.id)
        self.kernel.emit(CommandCompleted(self.clock.now, command.id, command.kind, command.user, accepted, reason))
        outcome = ("accepted: " if accepted else "refused: ") + reason
        params = {**command.payload, "command_id": command.id}
        self.audit.log.record(
            f"{'user' if proven else 'unverified'}:{command.user}", f"command.{command.kind}",
            _command_subject(self.audit, params),
            {"params": params, "outcome": outcome, "signer": signer, "claimed_user": command.user}, ts=self.clock.now,
        )

    def _poll_bars(self) -> int:
        if self.feed is None or self.state != RUNNING:
            return 0
        bars = self.gate.poll(self.feed, self.config.max_feed_steps_per_turn)
        self._watch_feed(len(bars))
        behind = self.feed_behind_s()
        if behind > LAG_ALERT_S and not self._lagging:
            self._lagging = True
            self.alert("warning", "feed", f"the engine is {behind:.0f} s behind the feed (speed {self.config.speed:g} "
                       "steps/s is more than it keeps up with); bars are taken in order as it catches up")
        elif behind < 1.0 and self._lagging:
            self._lagging = False
            self.alert("info", "feed", "the engine has caught up with the feed")
        if not bars:
            return 0
        step_ts = None
        step_marks: dict[str, Decimal] = {}
        for bar in bars:
            if bar.ts != step_ts:
                if step_marks:
                    self._close_step(step_ts, step_marks)  # type: ignore[arg-type]
                    step_marks = {}
                step_ts = bar.ts
            self.on_bar(bar)
            step_marks[bar.symbol] = to_decimal(bar.close)
        self._close_step(step_ts, step_marks)  # type: ignore[arg-type]
        return len(bars)

    def _watch_feed(self, delivered: int) -> None:
        """Tell the watch what this poll brought; alert on a change of the feed's health, and move
        the account to REDUCING while the feed is down (back to ACTIVE when it delivers, if that
        restriction is still the feed's own)."""
        watch = self.watch
        if watch is None or self.feed is None:
            return
        was, last_bar = watch.health, watch.last_bar_ns
        health = watch.observe(delivered, self.feed.exhausted)
        if health is None:
            return
        cfg, name = self.config, f"the {self.config.feed} feed"
        silent_ns = self.wall.now - last_bar
        silent = f"{silent_ns / NS:.0f} s (wall clock)"
        if was is FeedHealth.LIVE:  # stale, or straight down after one long turn
            self._emit_fact(FeedStale(self.clock.now, ALL_SYMBOLS, last_bar, watch.limit_ns(FeedHealth.STALE),
                                      f"{cfg.feed} (wall clock)"))
            self.alert("warning", "feed", f"no bar from {name} for {silent} (limit {cfg.feed_stale_s:g} s); "
                       f"the account goes REDUCING after {cfg.feed_reduce_s:g} s")
        if health is FeedHealth.DOWN:
            changed = self.modes.restrict(ACCOUNT, TradingMode.REDUCING, actor=FEED_WATCH,
                                          reason=f"feed down: no bar from {name} for {silent} "
                                                 f"(limit {cfg.feed_reduce_s:g} s)")
            self.alert("error", "feed", f"{name} is down: no bar for {silent}; " + (
                "account REDUCING until it delivers again" if changed else
                f"account already {self.modes.account.value}, left as it is"))
        elif health is FeedHealth.LIVE:
            self._emit_fact(FeedResumed(self.clock.now, ALL_SYMBOLS, silent_ns, f"{cfg.feed} (wall clock)"))
            lifted = self.modes.lift(ACCOUNT, actor=FEED_WATCH, reason=f"{name} delivers again after {silent}")
            self.alert("info", "feed", f"{name} delivers again after {silent}"
                       + ("; account ACTIVE again" if lifted else ""))

    def feed_behind_s(self) -> float:
        """How long the oldest bar the engine has not taken yet has been due (0 when it keeps up)."""
        return float(getattr(self.feed, "behind_s", 0.0))

    def on_bar(self, bar: Bar) -> None:
        if bar.ts > self.clock.now:
            self.clock.now = bar.ts
        self.counters.bars += 1
        for listener in self.bar_listeners:
            listener(bar)
        self.client.on_bar(bar)  # the venue matches working orders first (fills at this bar's prices)
        if self.venue.pending_reports:
            # the strategies see this bar's fills before the bar, as in the backtest: the orders
            # made so far are committed first (write-ahead), then the venue commits and reports
            self.writer.flush()
            self.venue.flush()
        self.chain.on_bar(bar)
        self.conditions.on_bar(bar)
        self.manager.on_bar(bar)
        self.chain.after_bar()

    def _close_step(self, ts: int, marks: dict[str, Decimal]) -> None:
        self.counters.steps += 1
        self._last_marks.update(marks)
        self.kernel.emit(MarksUpdated(ts, tuple(sorted(marks.items()))))
        if self.counters.steps % 5 == 0 or not self.equity_curve:
            self.equity_curve.append((ts, str(marked_equity(self.kernel.state))))
            del self.equity_curve[:-500]

    # --- risk modes and the kill switch ------------------------------------------------------------
    def trading_mode(self) -> tuple[str, str]:
        return self.modes.mode(ACCOUNT).value, self.modes.reason(ACCOUNT)

    def strategy_mode(self, strategy_id: str) -> str:
        return self.modes.mode(strategy_id).value

    def limit_utilisation(self) -> list[dict[str, Any]]:
        """The real-time monitors' last readings: limit, value and how much of the limit is used."""
        rows = []
        for (scope, name), reading in sorted(self.monitors.readings.items()):
            limit = getattr(reading, "limit", None)
            value = getattr(reading, "value", None)
            used = None
            if limit not in (None, 0) and value is not None:
                used = float(abs(value) / abs(limit))
            rows.append({"name": name, "scope": scope, "limit": _text(limit), "value": _text(value), "utilisation": used})
        return rows

    def halt(self, reason: str, *, actor: str, flatten: bool = False) -> str:
        summary = halt(self.kernel, self.modes, reason=reason, actor=actor, flatten=flatten)
        text = f"account HALTED: {len(summary.cancels_requested)} cancel(s) requested"
        if flatten:
            text += f", {len(summary.flatten_orders)} flatten order(s)"
        self.alert("critical", "kill switch", f"{actor}: {reason}")
        return text

    def resume_trading(self, reason: str, *, actor: str) -> str:
        resume_trading(self.modes, actor, reason)
        return "account ACTIVE again"

    def resume_strategy_trading(self, strategy_id: str, reason: str, *, actor: str) -> str:
        """One strategy's mode back to ACTIVE (an authorised user only); this also re-enables a strategy
        runaway protection disabled. Its lifecycle is left as it is: a paused one is resumed apart."""
        self.modes.require_authorised(actor, f"resume trading of strategy {strategy_id}")
        was_disabled = strategy_id in self.guard.disabled
        if self.modes.mode(strategy_id) is TradingMode.ACTIVE and not was_disabled:
            raise ValueError(f"strategy {strategy_id} is ACTIVE and not disabled: nothing to resume")
        self.modes.resume(strategy_id, actor, reason or f"resumed by {actor}")
        text = f"strategy {strategy_id} ACTIVE again" + (" (re-enabled after runaway protection)" if was_disabled else "")
        managed = strategy_id in self.manager.strategy_ids  # (a manual book has no lifecycle)
        if managed and self.manager.state(strategy_id) is StrategyState.PAUSED:
            text += f"; it is PAUSED: qlcore strategy resume {strategy_id} hands it bars again"
        return text

    def _disable(self, strategy_id: str, reason: str) -> None:
        """Runaway protection tripped: the strategy stops sending and its open orders are cancelled."""
        if strategy_id in self.manager.strategy_ids and self.manager.state(strategy_id) is StrategyState.RUNNING:
            self.manager.pause(strategy_id, cancel_open_orders=True, actor="runaway-protection")
        self.alert("error", "runaway protection", f"{strategy_id} disabled: {reason}")

    def _on_lifecycle(self, event: Event) -> None:
        if isinstance(event, StrategyDeployed):
            self.monitors.add_strategy(event.strategy_id, json.loads(event.details)["allocation"])
        elif isinstance(event, StrategyFailed):
            fault = Fault.from_details(event.details)
            self.alert("error", "strategies", f"{event.strategy_id} FAILED in {fault.describe()}; the others go on. "
                       f"Stop it to clear: qlcore strategy stop {event.strategy_id} [--flatten]")

    def _save_derived(self) -> None:
        """Save the monitors' state with the last committed sequence number it reflects, and the
        strategies' `save_state` with the market time it reflects (every bar up to it was handed)."""
        from qlcore.engine import derived_state

        self.writer.flush()
        self._last_saved = time.monotonic()
        seq = self.writer.committed_seq
        derived_state.save(self.db, self.config.engine_id, derived_state.MONITORS, self.config.stream, seq,
                           self.monitors.checkpoint())
        # an id is deployed once (STOPPED is final, and stays so across restarts): a saved state belongs
        # to the one deployment of its id
        kept = self.manager.saved_states()
        self.writer.flush()  # a strategy whose save_state raised is FAILED: that is in the log first
        derived_state.save(self.db, self.config.engine_id, derived_state.STRATEGIES, self.config.stream, seq,
                           {"ts": self.clock.now, "strategies": kept})

    def _load_strategy_states(self) -> None:
        """Give the re-deployed strategies the state they saved (`Strategy.load_state`); `restored`
        then names them and `restored_ts` holds the market time their state reflects."""
        from qlcore.engine import derived_state

        saved = derived_state.load(self.db, self.config.engine_id, derived_state.STRATEGIES, self.config.stream)
        if saved is None:
            return
        try:
            ts, entries = int(saved.body["ts"]), dict(saved.body["strategies"])
        except (KeyError, TypeError, ValueError) as exc:
            self.alert("warning", "strategies", f"saved strategy state unreadable ({exc!r}): they start from their "
                       "indicators only")
            return
        for sid, state in entries.items():
            if sid not in self.manager.strategy_ids or self.manager.state(sid) in (StrategyState.STOPPED,
                                                                                   StrategyState.FAILED):
                continue
            try:
                self.manager.strategy(sid).load_state(state)
            except Exception as exc:  # one strategy's bad state must not stop the engine
                self.alert("warning", "strategies", f"{sid}: saved state not loaded ({exc!r}); it starts afresh")
                continue
            self.restored.add(sid)
            self.restored_ts = ts

    def _beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.config.heartbeat_s:
            return
        self._last_beat = now
        if self.state == RUNNING and now - self._last_saved >= self.config.derived_state_s:
            self._save_derived()
        from qlcore.engine.snapshot import build_snapshot

        self.lease.beat(self.state, build_snapshot(self))


@dataclass
class _StoreFault:
    """Why the engine is suspended, since when, and its retries (backoff doubling up to a cap)."""

    reason: str
    since: float
    attempts: int = 0
    backoff: float = STORE_RETRY_FIRST_S
    retry_at: float = 0.0

    def __post_init__(self) -> None:
        self.retry_at = self.since + self.backoff


class _MarketClock:
    """The gate's view of time: the engine's market clock (so staleness and gaps use bar time)."""

    def __init__(self, clock: BacktestClock) -> None:
        self._clock = clock

    @property
    def now(self) -> int:
        return self._clock.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _command_subject(recorder: AuditRecorder, params: dict[str, Any]) -> str:
    order_id = params.get("order_id")
    if order_id:
        return recorder.subject(str(order_id))
    sid = params.get("strategy_id")
    return f"strategy/{sid}" if sid else "account"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _limits_off_admin(config: EngineConfig) -> str | None:
    """The admin approving `no_limits`, proven by their signing key; None when there is nothing to prove
    yet (no opt-out, or one that `engine_limits` refuses for what it lacks)."""
    if not (config.no_limits and (config.admin_approval or "").strip() and config.risk_config is None):
        return None
    import getpass

    name = config.admin or os.environ.get("QLCORE_USER") or getpass.getuser()
    try:
        return proven_admin(config.resolved_users_file, name)
    except CredentialError as exc:
        raise LimitsOptOutRefused(f"--no-limits needs an admin's say, proven by their signing key "
                                  f"(--admin NAME): {exc}") from None


def run_engine(config: EngineConfig, *, on_ready: Callable[[EngineService], None] | None = None) -> EngineService:
    """Build, start and run an engine in this thread with signal handling (the `qlcore engine` command)."""
    service = EngineService(config)
    service.install_signal_handlers()
    service.start()
    if on_ready is not None:
        on_ready(service)
    service.run()
    return service


__all__ = ["DEMO_STRATEGIES", "EngineConfig", "EngineService", "run_engine"]
