"""The Airflow run of a generation an operator started from the trigger form.

A generation the API starts runs as the DAG run named by its own id; one started from Airflow's
trigger form runs under the run id Airflow gave it, which links to it from alerts and the
generation page need. NULL for the API's generations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 06:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ALTER TABLE (see 0003): SQLite and Postgres add and drop a nullable column in place.
    op.add_column('generation', sa.Column('airflow_run_id', sa.String(length=250), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('generation', 'airflow_run_id')
