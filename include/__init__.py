"""Domain code and clients of BitBuddies. Nothing here imports Airflow."""
