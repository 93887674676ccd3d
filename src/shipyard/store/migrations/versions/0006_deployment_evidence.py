"""deployment evidence: per-revision guard counters shared by router workers

Revision ID: 0006_deployment_evidence
Revises: 0005_deployments
Create Date: 2026-11-30 09:12:40.311874
"""

import sqlalchemy as sa
from alembic import op

revision = '0006_deployment_evidence'
down_revision = '0005_deployments'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployment_evidence',
    sa.Column('deployment', sa.String(length=256), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=False),
    sa.Column('counter', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('deployment', 'revision', 'arm', 'counter', name=op.f('pk_deployment_evidence'))
    )


def downgrade() -> None:
    op.drop_table('deployment_evidence')
