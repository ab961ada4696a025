"""Airflow glue for BitBuddies: the model-provider hook, its trigger and operator, and stage reporting.

This package lives in the plugins folder so that the triggerer can import the trigger
(the dags folder is not on the triggerer's path).
"""
