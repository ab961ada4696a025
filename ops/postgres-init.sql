-- The application database (users, generations, ledger), beside Airflow's metadata DB.
-- Run once by the postgres image on an empty volume (docker-compose.yaml).
CREATE DATABASE bitbuddies OWNER bitbuddies;
