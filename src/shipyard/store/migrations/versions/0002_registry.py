"""model registry

Revision ID: 0002_registry
Revises: 0001_initial
Create Date: 2026-11-30 00:22:11.105201
"""

import sqlalchemy as sa
from alembic import op

revision = '0002_registry'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alias_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alias_history'))
    )
    with op.batch_alter_table('alias_history', schema=None) as batch_op:
        batch_op.create_index('ix_alias_history_lookup', ['name', 'alias', 'timestamp'], unique=False)

    op.create_table('model_version_tags',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', 'version', 'key', name=op.f('pk_model_version_tags'))
    )
    op.create_table('registered_models',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('owner', sa.String(length=256), nullable=True),
    sa.Column('creation_time', sa.BigInteger(), nullable=False),
    sa.Column('last_update_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_registered_models'))
    )
    op.create_table('model_aliases',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['name'], ['registered_models.name'], name=op.f('fk_model_aliases_name_registered_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', 'alias', name=op.f('pk_model_aliases'))
    )
    op.create_table('registered_model_tags',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['name'], ['registered_models.name'], name=op.f('fk_registered_model_tags_name_registered_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', 'key', name=op.f('pk_registered_model_tags'))
    )
    op.create_table('model_versions',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('flavor', sa.String(length=32), nullable=False),
    sa.Column('signature_json', sa.Text(), nullable=True),
    sa.Column('environment_json', sa.Text(), nullable=True),
    sa.Column('metrics_json', sa.Text(), nullable=True),
    sa.Column('code_commit', sa.String(length=64), nullable=True),
    sa.Column('code_dirty', sa.Boolean(), nullable=True),
    sa.Column('feature_refs_json', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('creator', sa.String(length=256), nullable=True),
    sa.Column('creation_time', sa.BigInteger(), nullable=False),
    sa.Column('last_update_time', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['name'], ['registered_models.name'], name=op.f('fk_model_versions_name_registered_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_model_versions_run_id_runs')),
    sa.PrimaryKeyConstraint('name', 'version', name=op.f('pk_model_versions'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index('ix_model_versions_digest', ['digest'], unique=False)
        batch_op.create_index('ix_model_versions_run', ['run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_model_versions_run')
        batch_op.drop_index('ix_model_versions_digest')

    op.drop_table('model_versions')
    op.drop_table('registered_model_tags')
    op.drop_table('model_aliases')
    op.drop_table('registered_models')
    op.drop_table('model_version_tags')
    with op.batch_alter_table('alias_history', schema=None) as batch_op:
        batch_op.drop_index('ix_alias_history_lookup')

    op.drop_table('alias_history')
