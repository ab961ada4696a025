"""The local model server: offline computer-vision stages behind fal.ai's queue protocol.

A separate process (``python -m model_server``) that the generation DAG talks to as it
would to fal.ai: submit, poll status, fetch result, cancel. Modules:

- ``server_app``: the HTTP routes (FastAPI) and the app factory ``create_app``;
- ``worker_pool``: the FIFO queue and the bounded pool of worker processes;
- ``worker_process``: what runs inside a worker process;
- ``model_stages``: the models offered, their input schemas and stage handlers;
- ``job_context``: what a handler gets (logging, inputs, output files) and how it fails;
- ``job_store``: job state, logs and the submission record in SQLite;
- ``input_fetch``: reading input URLs (http(s), data:, file://);
- ``fault_injection``: latency, failures, hangs and HTTP errors on demand.
"""
