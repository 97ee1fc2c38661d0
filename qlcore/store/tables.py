"""Table definitions. One `MetaData`; every package's tables are declared here."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# a 64-bit key everywhere, but SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid)
BigId = BigInteger().with_variant(Integer, "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("stream", String(96), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("checksum", BigInteger, nullable=False),
    UniqueConstraint("stream", "seq", name="uq_events_stream_seq"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("strategies", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("state_hash", String(64)),
    Column("final_equity", String(64)),
    Column("events", BigInteger),
    Column("metrics", Text),
    Column("equity", LargeBinary),
    Index("ix_runs_created_at", "created_at"),
)

# One row per `qlcore parity` check (qlcore.store.runs.save_parity): the verdict and the report's
# summary (ParityReport.to_dict) as JSON; the research page lists them beside the notebooks' verdicts.
parity_runs = Table(
    "parity_runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("user", String(128), nullable=False),
    Column("strategy", String(256), nullable=False),
    Column("symbols", Text, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("report", Text, nullable=False),
    Index("ix_parity_runs_created_at", "created_at"),
)

# --- audit (qlcore.audit) -------------------------------------------------------------------------
# An append-only, hash-chained log: hash = sha256(prev_hash + canonical JSON of the entry). `seq`
# is the primary key, so two writers cannot both append seq N: the second one fails.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_subject", "subject"),
)

# The chain's last entry, updated in the same transaction as every append: a deleted tail shows as
# a head the log no longer reaches, and a writer whose view of the tail is stale fails here.
audit_head = Table(
    "audit_head",
    metadata,
    Column("chain", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# --- commands (qlcore.control) --------------------------------------------------------------------
# The queue through which dashboards, the CLI and jobs ask the engine to act; the engine is the only
# writer of trading state. A row moves pending -> taken (by one consumer) -> accepted | refused.
# AUTOINCREMENT on SQLite: ids are never reused, so a consumer may remember the last id it saw.
commands = Table(
    "commands",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ts_submitted", BigInteger, nullable=False),
    Column("user", String(128), nullable=False),
    Column("target", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("consumer", String(128)),
    Column("ts_taken", BigInteger),
    Column("ts_completed", BigInteger),
    Column("reason", Text),
    # the sender's proof (qlcore.control.identity.Credential as JSON) and its nonce: a copy of a signed
    # row cannot even be stored twice (older rows, from before commands were signed, have neither)
    Column("credential", Text),
    Column("nonce", String(64)),
    Index("ix_commands_target_status_id", "target", "status", "id"),
    Index("ix_commands_target_status_kind_id", "target", "status", "kind", "id"),  # the priority lanes
    Index("ix_commands_target_user_status_ts", "target", "user", "status", "ts_submitted"),  # per-client bounds
    Index("uq_commands_nonce", "nonce", unique=True),  # a replayed credential is refused at the insert
    sqlite_autoincrement=True,
)

# --- notebook submissions and reviews (qlcore.ops) ------------------------------------------------
# A submission is one papermill run of one notebook version (code hash) with given parameters.
# status: running -> succeeded | failed; succeeded -> approved | rejected; approved -> revoked.
submissions = Table(
    "submissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("notebook", Text, nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("author", String(128), nullable=False),
    Column("results", Text),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("output_path", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_submissions_created_at", "created_at"),
)

# Every review decision on a submission (approved, rejected, revoked), who made it and why.
submission_reviews = Table(
    "submission_reviews",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("submission_id", String(32), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("job_id", String(128)),
    Column("cron", String(128)),
    Column("mode", String(16)),
    Column("limits", Text),
    Column("reason", Text),
    Column("ts", String(32), nullable=False),
    Index("ix_submission_reviews_submission", "submission_id"),
    sqlite_autoincrement=True,
)

# The signed form of every submission and review decision (qlcore.control.reviews): the canonical
# JSON body, who signed it and the Ed25519 signature. A schedule record and a job's deployment are
# honoured only when they match the newest signed decision for their job.
signed_reviews = Table(
    "signed_reviews",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # submission | approved | rejected | revoked
    Column("submission_id", String(32), nullable=False),
    Column("job_id", String(128)),
    Column("signer", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("ts", String(32), nullable=False),
    Index("ix_signed_reviews_job", "job_id", "id"),
    Index("ix_signed_reviews_submission", "submission_id", "kind"),
    sqlite_autoincrement=True,
)

# --- the engine service (qlcore.engine.service) ---------------------------------------------------
# One row per engine: its heartbeat (wall-clock ns) and lease, and the read model that the CLI and
# dashboards show: `snapshot` is JSON (see `qlcore.engine.snapshot`), rewritten about twice a second.
engine_status = Table(
    "engine_status",
    metadata,
    Column("engine_id", String(64), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("snapshot", Text, nullable=False),
)

# State an engine derives from its log but that is slow to derive again (the risk monitors' peaks,
# baselines and VaR window): one row per engine and part, replaced as the engine runs, valid for
# the log up to `seq` (qlcore.engine.derived_state). Losing it costs a longer start, nothing else.
engine_derived_state = Table(
    "engine_derived_state",
    metadata,
    Column("engine_id", String(64), primary_key=True),
    Column("part", String(32), primary_key=True),
    Column("stream", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("saved_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
)

# --- scheduled notebook runs (qlcore.ops.runs, qlcore.ops.scheduler) -------------------------------
# One row per attempt of a scheduled (or run-now) job: running -> succeeded | failed | timeout, or
# refused at the gate (never ran). A refused, failed or timed-out row is also the job's alert.
job_runs = Table(
    "job_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job_id", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | manual
    Column("status", String(16), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("duration_ms", BigInteger),
    Column("approved_hash", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False),  # as found at the gate ("" if the notebook is missing)
    Column("failing_cell", Integer),
    Column("error", Text),
    Column("output_path", Text),
    Column("params", Text, nullable=False),
    Index("ix_job_runs_job_started", "job_id", "started_at"),
)

# The process of a run in progress (`qlcore.ops.runner`): the runner and the process that started it,
# each a pid with its start time (so a reused pid is not mistaken for it), and the folder holding its
# spec and outcome. A scheduler that starts after a crash reads it to tell a live run from a dead one.
job_run_processes = Table(
    "job_run_processes",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", BigInteger),  # clock ticks after boot (/proc/PID/stat); NULL where unknown
    Column("parent_pid", Integer, nullable=False),
    Column("parent_start", BigInteger),
    Column("workdir", Text, nullable=False),
)

# Operational switches per job that outlive a scheduler restart (pause / resume).
job_controls = Table(
    "job_controls",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("paused", Integer, nullable=False),
    Column("changed_by", String(128), nullable=False),
    Column("changed_at", String(32), nullable=False),
    Column("reason", Text),
)

# The single scheduler's lease: who holds it (pid, host, a random owner id) and its last heartbeat
# (wall-clock ns). A second scheduler refuses to start while the heartbeat is fresh.
scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
)
