"""baseline schema

The schema as the models declared it before migrations: users, generations, the token ledger,
Stripe events, sticker orders and their events, generation events, alerts.

Revision ID: 0001
Revises: 
Create Date: 2026-11-30 20:19:59.398291

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('generation_id', sa.String(length=32), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=250), nullable=False),
    sa.Column('message', sa.String(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('url', sa.String(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery_error', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_generation_id'), ['generation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_kind'), ['kind'], unique=False)

    op.create_table('stripe_event',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('user',
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_api_key_hash'), ['api_key_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_user_email'), ['email'], unique=True)

    op.create_table('generation',
    sa.Column('prompt', sa.String(length=500), nullable=False),
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('failed_task', sa.String(length=250), nullable=True),
    sa.Column('refund_state', sa.String(length=16), nullable=False),
    sa.Column('upload_path', sa.String(length=500), nullable=False),
    sa.Column('assets', sa.JSON(), nullable=False),
    sa.Column('slug', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('triggered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_generation_user_idempotency_key')
    )
    with op.batch_alter_table('generation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generation_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_slug'), ['slug'], unique=True)
        batch_op.create_index(batch_op.f('ix_generation_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_triggered_at'), ['triggered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_user_id'), ['user_id'], unique=False)

    op.create_table('sticker_order',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('generation_ids', sa.JSON(), nullable=False),
    sa.Column('sheet_size', sa.String(length=8), nullable=False),
    sa.Column('copies', sa.Integer(), nullable=False),
    sa.Column('sheet_count', sa.Integer(), nullable=False),
    sa.Column('shipping_address', sa.JSON(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_provider', sa.String(length=16), nullable=True),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('checkout_url', sa.String(), nullable=True),
    sa.Column('payment_reference', sa.String(length=255), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('triggered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sheet_key', sa.String(length=500), nullable=True),
    sa.Column('home_sheet_key', sa.String(length=500), nullable=True),
    sa.Column('vendor', sa.String(length=32), nullable=True),
    sa.Column('vendor_job_id', sa.String(length=255), nullable=True),
    sa.Column('tracking_number', sa.String(length=255), nullable=True),
    sa.Column('tracking_url', sa.String(), nullable=True),
    sa.Column('carrier', sa.String(length=64), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('refund_state', sa.String(length=16), nullable=False),
    sa.Column('refund_reference', sa.String(length=255), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_sticker_order_user_idempotency_key')
    )
    with op.batch_alter_table('sticker_order', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sticker_order_checkout_session_id'), ['checkout_session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sticker_order_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sticker_order_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_sticker_order_triggered_at'), ['triggered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sticker_order_user_id'), ['user_id'], unique=False)

    op.create_table('generation_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generation_id'], ['generation.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('generation_id', 'key', name='uq_generation_event_key'),
    sa.UniqueConstraint('generation_id', 'seq', name='uq_generation_event_seq')
    )
    with op.batch_alter_table('generation_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generation_event_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_event_generation_id'), ['generation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_event_type'), ['type'], unique=False)

    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('generation_id', sa.String(), nullable=True),
    sa.Column('refund_of', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generation_id'], ['generation.id'], ),
    sa.ForeignKeyConstraint(['refund_of'], ['ledger_entry.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('refund_of')
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_generation_id'), ['generation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entry_user_id'), ['user_id'], unique=False)

    op.create_table('sticker_order_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('message', sa.String(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['sticker_order.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id', 'dedupe_key', name='uq_sticker_order_event_dedupe')
    )
    with op.batch_alter_table('sticker_order_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sticker_order_event_order_id'), ['order_id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('sticker_order_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sticker_order_event_order_id'))

    op.drop_table('sticker_order_event')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_user_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entry_generation_id'))

    op.drop_table('ledger_entry')
    with op.batch_alter_table('generation_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generation_event_type'))
        batch_op.drop_index(batch_op.f('ix_generation_event_generation_id'))
        batch_op.drop_index(batch_op.f('ix_generation_event_created_at'))

    op.drop_table('generation_event')
    with op.batch_alter_table('sticker_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sticker_order_user_id'))
        batch_op.drop_index(batch_op.f('ix_sticker_order_triggered_at'))
        batch_op.drop_index(batch_op.f('ix_sticker_order_status'))
        batch_op.drop_index(batch_op.f('ix_sticker_order_created_at'))
        batch_op.drop_index(batch_op.f('ix_sticker_order_checkout_session_id'))

    op.drop_table('sticker_order')
    with op.batch_alter_table('generation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generation_user_id'))
        batch_op.drop_index(batch_op.f('ix_generation_triggered_at'))
        batch_op.drop_index(batch_op.f('ix_generation_status'))
        batch_op.drop_index(batch_op.f('ix_generation_slug'))
        batch_op.drop_index(batch_op.f('ix_generation_created_at'))

    op.drop_table('generation')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_email'))
        batch_op.drop_index(batch_op.f('ix_user_api_key_hash'))

    op.drop_table('user')
    op.drop_table('stripe_event')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_kind'))
        batch_op.drop_index(batch_op.f('ix_alert_generation_id'))
        batch_op.drop_index(batch_op.f('ix_alert_created_at'))

    op.drop_table('alert')
