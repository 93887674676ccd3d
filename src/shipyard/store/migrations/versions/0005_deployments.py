"""deployments: records, revisions, arm stats, assignments, decisions

Revision ID: 0005_deployments
Revises: 0004_auth
Create Date: 2026-11-30 04:09:12.150628
"""

import sqlalchemy as sa
from alembic import op

revision = '0005_deployments'
down_revision = '0004_auth'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployment_arm_stats',
    sa.Column('deployment', sa.String(length=256), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=False),
    sa.Column('pulls', sa.BigInteger(), nullable=False),
    sa.Column('rewards', sa.BigInteger(), nullable=False),
    sa.Column('reward_sum', sa.Float(precision=53), nullable=False),
    sa.Column('reward_sq_sum', sa.Float(precision=53), nullable=False),
    sa.Column('successes', sa.Float(precision=53), nullable=False),
    sa.Column('failures', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('deployment', 'arm', name=op.f('pk_deployment_arm_stats'))
    )
    op.create_table('deployment_assignments',
    sa.Column('prediction_id', sa.String(length=128), nullable=False),
    sa.Column('deployment', sa.String(length=256), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('prediction_id', name=op.f('pk_deployment_assignments'))
    )
    with op.batch_alter_table('deployment_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_assignments_deployment_time', ['deployment', 'time'], unique=False)

    op.create_table('deployment_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('deployment', sa.String(length=256), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('evidence_json', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_decisions'))
    )
    with op.batch_alter_table('deployment_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_decisions_deployment', ['deployment', 'id'], unique=False)

    op.create_table('deployments',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_deployments'))
    )
    op.create_table('deployment_revisions',
    sa.Column('deployment', sa.String(length=256), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['deployment'], ['deployments.name'], name=op.f('fk_deployment_revisions_deployment_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment', 'revision', name=op.f('pk_deployment_revisions'))
    )


def downgrade() -> None:
    op.drop_table('deployment_revisions')
    op.drop_table('deployments')
    with op.batch_alter_table('deployment_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_decisions_deployment')

    op.drop_table('deployment_decisions')
    with op.batch_alter_table('deployment_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_assignments_deployment_time')

    op.drop_table('deployment_assignments')
    op.drop_table('deployment_arm_stats')
