"""Engine runs (jobs) and their lines, kept in the database: a reloaded page or another server process
shows them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slice", sa.String(100), nullable=False),
        sa.Column("verb", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("runner", sa.String(300), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
    )
    op.create_index("ix_jobs_slice", "jobs", ["slice"])
    op.create_table(
        "job_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_job_lines_job_id", "job_lines", ["job_id"])


def downgrade() -> None:
    op.drop_table("job_lines")
    op.drop_table("jobs")
