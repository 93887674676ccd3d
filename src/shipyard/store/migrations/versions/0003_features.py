"""feature store

Revision ID: 0003_features
Revises: 0002_registry
Create Date: 2026-11-30 00:46:58.543050
"""

import sqlalchemy as sa
from alembic import op

revision = '0003_features'
down_revision = '0002_registry'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feature_materializations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('view_name', sa.String(length=128), nullable=False),
    sa.Column('view_version', sa.Integer(), nullable=False),
    sa.Column('online_store', sa.String(length=256), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=True),
    sa.Column('end_time', sa.BigInteger(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feature_materializations'))
    )
    with op.batch_alter_table('feature_materializations', schema=None) as batch_op:
        batch_op.create_index('ix_feature_materializations_view', ['view_name', 'online_store', 'end_time'], unique=False)

    op.create_table('feature_objects',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('creation_time', sa.BigInteger(), nullable=False),
    sa.Column('creator', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('kind', 'name', 'version', name=op.f('pk_feature_objects'))
    )
    op.create_table('feature_statistics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('view_name', sa.String(length=128), nullable=False),
    sa.Column('view_version', sa.Integer(), nullable=False),
    sa.Column('feature', sa.String(length=128), nullable=False),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('stats_json', sa.Text(), nullable=False),
    sa.Column('computed_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feature_statistics'))
    )
    with op.batch_alter_table('feature_statistics', schema=None) as batch_op:
        batch_op.create_index('ix_feature_statistics_view', ['view_name', 'view_version', 'feature'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('feature_statistics', schema=None) as batch_op:
        batch_op.drop_index('ix_feature_statistics_view')

    op.drop_table('feature_statistics')
    op.drop_table('feature_objects')
    with op.batch_alter_table('feature_materializations', schema=None) as batch_op:
        batch_op.drop_index('ix_feature_materializations_view')

    op.drop_table('feature_materializations')
