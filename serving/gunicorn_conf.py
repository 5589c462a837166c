"""How the prediction service is served: the one definition that ``make serve``, the tests and
the serving benchmark start gunicorn with (``gunicorn --config serving/gunicorn_conf.py``; only
``--bind`` differs).

Workers: gevent, 2 processes of up to 1,000 connections each. gunicorn's docs (Design,
"Choosing a worker type") ask for a buffering proxy in front of sync workers and for async
workers when requests come straight from clients, as they do here: nothing runs in front of
``make serve``. Flask's deployment docs name gevent for gunicorn's async workers. A sync worker
is held by one connection from its first byte to the end of its answer, so two clients that send
half a request and wait take a 2-worker service down; gthread workers move the limit to the
number of threads (a connection that has sent part of its headers holds its thread). A gevent
worker waits for each connection in a greenlet of a few kilobytes, so slow, silent and
kept-alive connections wait beside the requests being answered, not in front of them. The app
does no blocking I/O of its own (the model is in memory), so nothing else changes for it.

Bounds on every connection (see :mod:`serving.gunicorn_worker`, which also makes the
connections of a worker take turns):

- request line and headers: within ``keepalive`` seconds of the connection (or of the previous
  answer on a kept-alive one), else the connection is closed;
- body and answer: within ``timeout`` seconds of the headers, else 408 (JSON) or a close;
- request line over ``limit_request_line`` bytes: 400; more than ``limit_request_fields``
  headers, or one over ``limit_request_field_size`` bytes: 431; body over 2 MiB: 400 (the app);
- connections beyond ``worker_connections`` per worker wait in the listen backlog.

The model: gunicorn's master starts the model watcher (:mod:`serving.watcher`), which loads the
model with MLflow in a process of its own and hands it to the workers through a state file,
then checks the registry every few seconds and hands over each new version the same way. The
workers never import MLflow or scikit-learn, and swap models without a restart.
"""

import os

wsgi_app = "serving:create_app()"
bind = ["127.0.0.1:8000"]

workers = 2
worker_class = "serving.gunicorn_worker.GeventWorker"
worker_connections = 1000
# Each worker creates the app after the fork: the master stays small, and each worker starts
# its own thread (greenlet) that follows the watcher's state file; a preloaded app's thread
# would stay behind in the master.
preload_app = False

# Seconds for a request line and headers, and for the next request on a kept-alive connection.
keepalive = 5
# Seconds for a request's body and answer (the worker's deadline); also how long a worker may
# leave its heartbeat unanswered before the master replaces it.
timeout = 10
graceful_timeout = 10

limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

control_socket_disable = True

#: The variable through which the workers learn where the watcher's state file is.
STATE_FILE_ENV = "FLASK_MODEL_STATE_FILE"


def when_ready(server) -> None:
    """Start the model watcher and wait for its first state, before any worker is forked."""
    from serving.watcher import WatcherProcess

    watcher = WatcherProcess(server.log)
    server.etf_model_watcher = watcher
    os.environ[STATE_FILE_ENV] = str(watcher.state_path)
    watcher.start()


def on_exit(server) -> None:
    """Stop the model watcher once the workers are gone."""
    watcher = getattr(server, "etf_model_watcher", None)
    if watcher is not None:
        watcher.stop()
