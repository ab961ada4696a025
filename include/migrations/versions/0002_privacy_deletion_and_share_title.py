"""Privacy: deleted users and generations (tombstones), purged files, the share page's title and
the print vendor's own error text (operator only).

All columns are nullable with no default: existing rows are live, not deleted, without a title.
Their files are not marked purged, so the retention DAG's first run removes the photos of
generations that ended more than the retention period ago.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 21:24:44.919220

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('generation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('share_title', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('files_purged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_generation_deleted_at'), ['deleted_at'], unique=False)

    with op.batch_alter_table('sticker_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vendor_error', sa.String(length=500), nullable=True))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    """Downgrade schema.

    Plain DROP COLUMN (SQLite 3.35+), not batch mode: a batch rebuild of "user" is refused by the
    foreign keys of the ledger rows that point at it.
    """
    op.drop_column('user', 'deleted_at')
    op.drop_column('sticker_order', 'vendor_error')
    op.drop_index(op.f('ix_generation_deleted_at'), table_name='generation')
    op.drop_column('generation', 'files_purged_at')
    op.drop_column('generation', 'deleted_at')
    op.drop_column('generation', 'share_title')
