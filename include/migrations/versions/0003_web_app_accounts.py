"""Web app accounts: passwords, browser sessions, several named API keys per user, the chosen motion.

The one key a user had (``user.api_key_hash``) moves into ``api_key`` as a key named "default"
before the column is dropped, so every existing key keeps working. Downgrading puts each user's
oldest live key back (a user without one gets an unusable placeholder hash: the old column was
NOT NULL) and drops the new tables and columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 21:03:08.342611

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_key_key_hash'), ['key_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_api_key_user_id'), ['user_id'], unique=False)

    op.create_table('web_session',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_session_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_session_user_id'), ['user_id'], unique=False)

    # Plain ALTER TABLE rather than batch mode: SQLite's batch copies and drops "user", which its
    # foreign keys refuse while ledger entries, generations and orders point at it. SQLite
    # (3.35+) and Postgres both add and drop these columns in place.
    op.add_column('generation', sa.Column('motion', sa.String(length=16), nullable=True))
    op.add_column('user', sa.Column('password_hash', sa.String(length=255), nullable=True))
    op.execute(
        "INSERT INTO api_key (user_id, name, key_hash, prefix, created_at) "
        "SELECT id, 'default', api_key_hash, 'bb_', created_at FROM \"user\""
    )
    op.drop_index('ix_user_api_key_hash', table_name='user')
    op.execute('ALTER TABLE "user" DROP COLUMN api_key_hash')


def downgrade() -> None:
    """Downgrade schema."""
    op.add_column('user', sa.Column('api_key_hash', sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE \"user\" SET api_key_hash = COALESCE("
        "(SELECT k.key_hash FROM api_key k WHERE k.user_id = \"user\".id AND k.revoked_at IS NULL ORDER BY k.id LIMIT 1), "
        "'no-key-' || CAST(id AS VARCHAR(20)))"
    )
    if op.get_bind().dialect.name != 'sqlite':  # SQLite cannot add NOT NULL in place; the values are all set
        op.alter_column('user', 'api_key_hash', existing_type=sa.String(length=64), nullable=False)
    op.create_index('ix_user_api_key_hash', 'user', ['api_key_hash'], unique=True)
    op.execute('ALTER TABLE "user" DROP COLUMN password_hash')
    op.execute('ALTER TABLE generation DROP COLUMN motion')

    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_session_user_id'))
        batch_op.drop_index(batch_op.f('ix_web_session_expires_at'))

    op.drop_table('web_session')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_key_user_id'))
        batch_op.drop_index(batch_op.f('ix_api_key_key_hash'))

    op.drop_table('api_key')
