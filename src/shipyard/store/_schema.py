"""The metadata schema as SQLAlchemy Core tables: the one source the migrations mirror.

Times are integer milliseconds since the epoch (UTC), as MLflow stores them, so that the
MLflow-compatible routes need no conversion. A test compares this metadata with the database
that the Alembic migrations produce, so the two cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=True),
    Column("lifecycle_stage", String(16), nullable=False, default="active"),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column(
        "experiment_id",
        Integer,
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=True),
    PrimaryKeyConstraint("experiment_id", "key"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column(
        "experiment_id",
        Integer,
        ForeignKey("experiments.experiment_id"),
        nullable=False,
    ),
    Column("run_name", String(250), nullable=True),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", String(16), nullable=False, default="active"),
    Column("parent_run_id", String(32), nullable=True),
    Column("user_id", String(256), nullable=True),
    Column("owner_host", String(256), nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Column("heartbeat_time", BigInteger, nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    Index("ix_runs_parent", "parent_run_id"),
    Index("ix_runs_status", "status"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_params_key_value", "key", "run_id"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=True),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_tags_key", "key", "run_id"),
)

# Every metric point. NaN is stored as value NULL + is_nan, because SQLite turns NaN into NULL.
metrics = Table(
    "metrics",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float(precision=53), nullable=True),
    Column("is_nan", Boolean, nullable=False, default=False),
    Column("step", BigInteger, nullable=False, default=0),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

# The latest point of each metric of each run (largest step, then largest timestamp):
# what search, order_by and run comparison read, one row per (run, key).
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float(precision=53), nullable=True),
    Column("is_nan", Boolean, nullable=False, default=False),
    Column("step", BigInteger, nullable=False, default=0),
    Column("timestamp", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(32), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=True),
    Column("schema_json", Text, nullable=True),
    Column("num_rows", BigInteger, nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    UniqueConstraint("name", "digest"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("dataset_id", String(32), ForeignKey("datasets.dataset_id"), nullable=False),
    Column("context", String(64), nullable=False, default="training"),
    PrimaryKeyConstraint("run_id", "dataset_id", "context"),
)

# Logical artifact paths of a run, each pointing at a content-addressed object.
artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "path"),
)

# One lineage graph for every capability: typed nodes, typed edges.
lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("src_type", String(32), nullable=False),
    Column("src_id", String(256), nullable=False),
    Column("relation", String(32), nullable=False),
    Column("dst_type", String(32), nullable=False),
    Column("dst_id", String(256), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    UniqueConstraint("src_type", "src_id", "relation", "dst_type", "dst_id"),
    Index("ix_lineage_edges_dst", "dst_type", "dst_id"),
)

# Append-only: the store never updates or deletes rows here.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("timestamp", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(256), nullable=False),
    Column("details", Text, nullable=True),
    Index("ix_audit_events_object", "object_type", "object_id"),
)

# -- model registry -----------------------------------------------------------------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("description", Text, nullable=True),
    Column("owner", String(256), nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("name", String(256), ForeignKey("registered_models.name", ondelete="CASCADE"),
           nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=True),
    PrimaryKeyConstraint("name", "key"),
)

# Immutable once READY: only status, description and tags change after registration.
model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(256), ForeignKey("registered_models.name", ondelete="CASCADE"),
           nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("run_id", String(32), ForeignKey("runs.run_id"), nullable=True),
    Column("digest", String(64), nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("signature_json", Text, nullable=True),
    Column("environment_json", Text, nullable=True),
    Column("metrics_json", Text, nullable=True),
    Column("code_commit", String(64), nullable=True),
    Column("code_dirty", Boolean, nullable=True),
    Column("feature_refs_json", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("creator", String(256), nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version"),
    Index("ix_model_versions_run", "run_id"),
    Index("ix_model_versions_digest", "digest"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("name", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=True),
    PrimaryKeyConstraint("name", "version", "key"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(256), ForeignKey("registered_models.name", ondelete="CASCADE"),
           nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
)

# Every alias move: answers "which version was production at time T?".
alias_history = Table(
    "alias_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(256), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("reason", Text, nullable=True),
    Index("ix_alias_history_lookup", "name", "alias", "timestamp"),
)

# -- feature store ------------------------------------------------------------------------------

# Every applied version of every definition (entity, feature_view, on_demand_view,
# feature_service); a breaking change to a feature view is a new version, old ones stay.
feature_objects = Table(
    "feature_objects",
    metadata,
    Column("kind", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("creator", String(256), nullable=True),
    PrimaryKeyConstraint("kind", "name", "version"),
)

# Each materialization window written to an online store (for incremental runs and resume).
feature_materializations = Table(
    "feature_materializations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("view_name", String(128), nullable=False),
    Column("view_version", Integer, nullable=False),
    Column("online_store", String(256), nullable=False),
    Column("start_time", BigInteger, nullable=True),
    Column("end_time", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Index("ix_feature_materializations_view", "view_name", "online_store", "end_time"),
)

# Profiles of features per view version (count, nulls, quantiles, histogram, top values):
# the reference that monitoring compares live data against.
feature_statistics = Table(
    "feature_statistics",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("view_name", String(128), nullable=False),
    Column("view_version", Integer, nullable=False),
    Column("feature", String(128), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("stats_json", Text, nullable=False),
    Column("computed_time", BigInteger, nullable=False),
    Index("ix_feature_statistics_view", "view_name", "view_version", "feature"),
)

# -- users, API tokens, roles -------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("creator", String(256), nullable=True),
)

# Only a SHA-256 of each token is stored; the token itself is shown once, at creation.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True),
    Column("user_name", String(128), ForeignKey("users.name", ondelete="CASCADE"),
           nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("last_used_time", BigInteger, nullable=True),
)

# -- deployments (rollouts) ---------------------------------------------------------------------

# The current state of each deployment; ``spec_json`` holds its arms, strategy, guards, auto.
deployments = Table(
    "deployments",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Every revision's spec, kept: an assignment made under revision N stays interpretable.
deployment_revisions = Table(
    "deployment_revisions",
    metadata,
    Column("deployment", String(256), ForeignKey("deployments.name", ondelete="CASCADE"),
           nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    PrimaryKeyConstraint("deployment", "revision"),
)

# Bandit / A-B state shared by every worker: only ever changed by ``SET x = x + :delta``.
deployment_arm_stats = Table(
    "deployment_arm_stats",
    metadata,
    Column("deployment", String(256), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("pulls", BigInteger, nullable=False, default=0),
    Column("rewards", BigInteger, nullable=False, default=0),
    Column("reward_sum", Float(precision=53), nullable=False, default=0.0),
    Column("reward_sq_sum", Float(precision=53), nullable=False, default=0.0),
    Column("successes", Float(precision=53), nullable=False, default=0.0),
    Column("failures", Float(precision=53), nullable=False, default=0.0),
    PrimaryKeyConstraint("deployment", "arm"),
)

# Which arm answered a prediction: feedback reaching another worker still credits that arm.
deployment_assignments = Table(
    "deployment_assignments",
    metadata,
    Column("prediction_id", String(128), primary_key=True),
    Column("deployment", String(256), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("time", BigInteger, nullable=False),
    Index("ix_deployment_assignments_deployment_time", "deployment", "time"),
)

# Append-only: every create/update/step/promote/rollback/stop with its reason and evidence.
deployment_decisions = Table(
    "deployment_decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("deployment", String(256), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("arm", String(64), nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("evidence_json", Text, nullable=True),
    Column("actor", String(256), nullable=False),
    Column("time", BigInteger, nullable=False),
    Index("ix_deployment_decisions_deployment", "deployment", "id"),
)

# Guard evidence of a revision shared by every router worker: one counter per row (requests,
# errors, labelled, correct, shadow comparisons, latency histogram buckets ``lat:<k>``),
# only ever changed by ``SET value = value + :delta``. The router gives the counters meaning.
deployment_evidence = Table(
    "deployment_evidence",
    metadata,
    Column("deployment", String(256), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("arm", String(64), nullable=False),
    Column("counter", String(32), nullable=False),
    Column("value", Float(precision=53), nullable=False, default=0.0),
    PrimaryKeyConstraint("deployment", "revision", "arm", "counter"),
)
