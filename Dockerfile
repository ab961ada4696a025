# One image for every BitBuddies service in docker-compose.yaml: Airflow (api-server, scheduler,
# dag-processor, triggerer, Celery workers), the FastAPI app and the local model server.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_HOME=/opt/bitbuddies \
    AIRFLOW_HOME=/opt/airflow \
    VIRTUAL_ENV=/opt/venv
ENV PATH=$VIRTUAL_ENV/bin:$PATH \
    PYTHONPATH=$APP_HOME \
    AIRFLOW__CORE__DAGS_FOLDER=$APP_HOME/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=$APP_HOME/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# libgl/libglib: OpenCV and MediaPipe; ffmpeg comes from the imageio-ffmpeg wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --create-home --home-dir $AIRFLOW_HOME airflow

WORKDIR $APP_HOME
# Dependencies first (the runtime lock only, checked against its hashes; the development lock with
# the test tools stays out of the image), so code changes rebuild only the last layers.
COPY requirements.txt requirements-nodeps.txt ./
RUN python -m venv $VIRTUAL_ENV \
 && pip install --no-cache-dir uv==0.13.8 \
 && uv pip install --no-cache --require-hashes -r requirements.txt \
 && uv pip install --no-cache --require-hashes --no-deps -r requirements-nodeps.txt

COPY pyproject.toml ./
COPY api api
COPY config config
COPY dags dags
COPY fulfillment fulfillment
COPY include include
COPY model_server model_server
COPY ops ops
COPY plugins plugins
# /extension.zip packs the Chrome extension from this folder at request time.
COPY extension extension
# The `bitbuddies` command.
RUN uv pip install --no-cache --no-deps -e . \
 && mkdir -p /var/lib/bitbuddies && chown -R 50000:0 /var/lib/bitbuddies $AIRFLOW_HOME

USER 50000
ENV BITBUDDIES_VAR_DIR=/var/lib/bitbuddies
EXPOSE 8000 8080 8200 8793
CMD ["airflow", "version"]
