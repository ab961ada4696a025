"""Airflow glue for BitBuddies: the model-provider hook, its trigger and operator, and stage reporting.

This package lives in the plugins folder so that the triggerer can import the trigger
(the dags folder is not on the triggerer's path).
"""

from bitbuddies_airflow.pushover import register as _register_pushover

# Operator alerts raised anywhere in Airflow read Pushover's keys from the Airflow connection.
_register_pushover()
